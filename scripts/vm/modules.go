package vm

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// VirtiofsModules are the modules a stock Debian kernel needs to mount
// virtiofs and overlayfs, in load order (dependencies first).
var VirtiofsModules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
	"virtio_pci", "fuse", "virtiofs", "overlay",
}

// NinePModules are the extra modules for mounting virtio-9p shares (used by
// benchmarks that compare against 9p), in load order.
var NinePModules = []string{"netfs", "9pnet", "9pnet_virtio", "9p"}

// moduleIndex knows where each module of one kernel lives.
type moduleIndex struct {
	dir     string
	files   map[string]string   // normalised name -> path of .ko[.gz|.xz|.zst]
	builtin map[string]bool     // normalised name -> built into the kernel
	deps    map[string][]string // normalised name -> dependencies, load order
}

func normaliseModuleName(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// moduleNameOf strips the directory and the .ko[.ext] suffix.
func moduleNameOf(path string) (string, bool) {
	base := filepath.Base(path)
	i := strings.Index(base, ".ko")
	if i <= 0 {
		return "", false
	}
	switch base[i:] {
	case ".ko", ".ko.gz", ".ko.xz", ".ko.zst":
		return normaliseModuleName(base[:i]), true
	}
	return "", false
}

func loadModuleIndex(dir string) (*moduleIndex, error) {
	idx := &moduleIndex{dir: dir, files: map[string]string{}, builtin: map[string]bool{}, deps: map[string][]string{}}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if name, ok := moduleNameOf(path); ok {
				// Prefer an uncompressed file when both exist.
				if old, seen := idx.files[name]; !seen || !strings.HasSuffix(old, ".ko") {
					idx.files[name] = path
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan kernel modules in %s: %w", dir, err)
	}
	if f, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if name, ok := moduleNameOf(sc.Text()); ok {
				idx.builtin[name] = true
			}
		}
	}
	if f, err := os.Open(filepath.Join(dir, "modules.dep")); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			mod, depList, ok := strings.Cut(sc.Text(), ":")
			name, isMod := moduleNameOf(mod)
			if !ok || !isMod {
				continue
			}
			// modules.dep lists the deepest dependency last; load it first.
			fields := strings.Fields(depList)
			for i := len(fields) - 1; i >= 0; i-- {
				if dep, ok := moduleNameOf(fields[i]); ok {
					idx.deps[name] = append(idx.deps[name], dep)
				}
			}
		}
	}
	return idx, nil
}

// withDependencies expands names so that every module's dependencies (from
// modules.dep) come before it, each once, skipping those in loaded.
func (idx *moduleIndex) withDependencies(names []string, loaded map[string]bool) []string {
	var order []string
	var visit func(name string)
	visit = func(name string) {
		if loaded[name] {
			return
		}
		loaded[name] = true
		for _, dep := range idx.deps[name] {
			visit(dep)
		}
		order = append(order, name)
	}
	for _, n := range names {
		visit(normaliseModuleName(n))
	}
	return order
}

// moduleFile is one module to be copied into the initramfs.
type moduleFile struct {
	name string
	data []byte
}

// resolve returns the contents of each module that must be loaded, skipping
// built-in ones. A missing required module is an error; a missing optional
// one is reported through skipped.
func (idx *moduleIndex) resolve(names []string, required bool) (mods []moduleFile, skipped []string, err error) {
	for _, raw := range names {
		name := normaliseModuleName(raw)
		path, ok := idx.files[name]
		if !ok {
			if idx.builtin[name] {
				continue
			}
			if !required {
				skipped = append(skipped, raw+" (not found)")
				continue
			}
			return nil, nil, fmt.Errorf("kernel module %s not found in %s and not built in: install the matching linux-image package or pick another kernel", raw, idx.dir)
		}
		data, err := readModule(path)
		if err != nil {
			if !required {
				skipped = append(skipped, fmt.Sprintf("%s (%v)", raw, err))
				continue
			}
			return nil, nil, err
		}
		mods = append(mods, moduleFile{name: name, data: data})
	}
	return mods, skipped, nil
}

// readModule returns an uncompressed module image. busybox insmod passes the
// bytes to init_module, so compressed modules must be inflated here: gzip
// with Go's standard library, xz (Debian's kernels since 6.12) and zstd with
// their tools, as for the kernel image.
func readModule(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read kernel module: %w", err)
	}
	var tool []string
	switch {
	case strings.HasSuffix(path, ".ko"):
		return data, nil
	case strings.HasSuffix(path, ".ko.gz"):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("inflate kernel module %s: %w", path, err)
		}
		out, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("inflate kernel module %s: %w", path, err)
		}
		return out, nil
	case strings.HasSuffix(path, ".ko.xz"):
		tool = []string{"xz", "-dc"}
	case strings.HasSuffix(path, ".ko.zst"):
		tool = []string{"zstd", "-dcq"}
	default:
		return nil, fmt.Errorf("kernel module %s is compressed in a format this builder cannot inflate (.ko, .ko.gz, .ko.xz and .ko.zst only)", path)
	}
	out, err := runFilter(tool, data, true)
	if err == nil && !bytes.HasPrefix(out, []byte(elf.ELFMAG)) {
		err = fmt.Errorf("%s did not give an ELF file", tool[0])
	}
	if err != nil {
		return nil, fmt.Errorf("inflate kernel module %s (apt-get install xz-utils zstd): %w", path, err)
	}
	return out, nil
}

package vm

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// Under TCG a Debian bzImage spends about 5 s decompressing itself (xz)
// before the kernel even starts. QEMU can boot the uncompressed ELF
// vmlinux directly through its PVH entry point, so the uncompressed kernel
// is extracted once on the host and cached.

// UncompressedKernel returns a cached, uncompressed PVH-bootable vmlinux
// for the bzImage at path, extracting it into cacheDir on first use. When
// the kernel cannot be extracted (unknown compression, no xz/zstd tool, no
// PVH entry) it returns path itself and the reason, so callers can boot the
// bzImage and note the reason.
func UncompressedKernel(path, cacheDir string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return path, fmt.Errorf("stat kernel: %w", err)
	}
	name := fmt.Sprintf("vmlinux-%s-%d-%d", filepath.Base(path), st.Size(), st.ModTime().Unix())
	cached := filepath.Join(cacheDir, name)
	if _, err := os.Stat(cached); err == nil {
		return cached, nil
	}
	image, err := os.ReadFile(path)
	if err != nil {
		return path, fmt.Errorf("read kernel: %w", err)
	}
	vmlinux, err := decompressKernel(image)
	if err != nil {
		return path, err
	}
	if err := checkPVH(vmlinux); err != nil {
		return path, err
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return path, fmt.Errorf("create kernel cache: %w", err)
	}
	tmp, err := os.CreateTemp(cacheDir, name+".tmp*")
	if err != nil {
		return path, fmt.Errorf("cache kernel: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(vmlinux)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		// Rename is atomic, so concurrent extractions cannot expose a
		// half-written kernel.
		err = os.Rename(tmp.Name(), cached)
	}
	if err != nil {
		return path, fmt.Errorf("cache kernel: %w", err)
	}
	return cached, nil
}

// decompressKernel finds the compressed payload inside a bzImage the way
// the kernel's scripts/extract-vmlinux does: try each magic and keep the
// first candidate that inflates to an ELF file.
func decompressKernel(image []byte) ([]byte, error) {
	formats := []struct {
		magic []byte
		tool  []string // nil: Go's gzip
	}{
		{[]byte("\xfd7zXZ\x00"), []string{"xz", "-dc", "--single-stream"}},
		{[]byte("\x28\xb5\x2f\xfd"), []string{"zstd", "-dcq"}},
		{[]byte("\x1f\x8b\x08"), nil},
	}
	var lastErr error = fmt.Errorf("no known compressed payload")
	for _, f := range formats {
		off := bytes.Index(image, f.magic)
		if off < 0 {
			continue
		}
		var out []byte
		var err error
		if f.tool == nil {
			out, err = gunzipPrefix(image[off:])
		} else {
			out, err = runFilter(f.tool, image[off:], false)
		}
		if err == nil && bytes.HasPrefix(out, []byte(elf.ELFMAG)) {
			return out, nil
		}
		if err != nil {
			lastErr = err
		}
	}
	return nil, fmt.Errorf("extract uncompressed kernel: %w", lastErr)
}

func gunzipPrefix(data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	zr.Multistream(false)
	return io.ReadAll(zr)
}

// runFilter decompresses with an external tool. A kernel's payload is
// followed by the rest of the bzImage, which zstd may call trailing garbage:
// unless strict, whatever it wrote is still checked for an ELF header by the
// caller.
func runFilter(tool []string, data []byte, strict bool) ([]byte, error) {
	bin, err := exec.LookPath(tool[0])
	if err != nil {
		return nil, fmt.Errorf("%s not installed: %w", tool[0], err)
	}
	cmd := exec.Command(bin, tool[1:]...)
	cmd.Stdin = bytes.NewReader(data)
	var out bytes.Buffer
	cmd.Stdout = &out
	runErr := cmd.Run()
	if out.Len() == 0 || strict && runErr != nil {
		return nil, fmt.Errorf("%s: %w", tool[0], runErr)
	}
	return out.Bytes(), nil
}

// checkPVH verifies that the ELF kernel has the Xen PVH entry note
// (XEN_ELFNOTE_PHYS32_ENTRY) QEMU needs to boot it with -kernel.
func checkPVH(vmlinux []byte) error {
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return fmt.Errorf("uncompressed kernel is not ELF: %w", err)
	}
	const xenElfnotePhys32Entry = 18
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(p.Open())
		if err != nil {
			continue
		}
		for len(notes) >= 12 {
			nameSize := int(binary.LittleEndian.Uint32(notes[0:]))
			descSize := int(binary.LittleEndian.Uint32(notes[4:]))
			typ := binary.LittleEndian.Uint32(notes[8:])
			nameEnd := 12 + align4(nameSize)
			next := nameEnd + align4(descSize)
			if nameSize < 0 || next > len(notes) || next <= 0 {
				break
			}
			if typ == xenElfnotePhys32Entry && string(bytes.TrimRight(notes[12:12+nameSize], "\x00")) == "Xen" {
				return nil
			}
			notes = notes[next:]
		}
	}
	return fmt.Errorf("uncompressed kernel has no PVH entry point (CONFIG_PVH=n)")
}

func align4(n int) int { return (n + 3) &^ 3 }

// CacheDir is where uvfsd's tools keep build products between runs:
// $XDG_CACHE_HOME/uvfsd, else ~/.cache/uvfsd, else a per-user directory in
// the system temp directory.
func CacheDir() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "uvfsd")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("uvfsd-cache-%d", os.Getuid()))
}

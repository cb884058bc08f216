package vm

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
)

// Mount is one file system the guest mounts before running the script.
type Mount struct {
	Type    string // "virtiofs" when empty; "9p" for virtio-9p (Tag is the mount_tag)
	Tag     string // virtiofs tag / 9p mount tag
	Dir     string // absolute guest mount point, created at boot
	Options string // mount -o options; empty for none
}

// User is the guest account that runs the script. The zero value is root.
type User struct {
	Name   string   // login name in the guest's /etc/passwd; "user" when empty
	UID    uint32   // numeric ids, usually the host user's so files match
	GID    uint32   //
	Groups []uint32 // supplementary groups
	Home   string   // $HOME; "/" when empty
	Shell  string   // login shell of an interactive session; /bin/sh when empty
}

func (u User) isRoot() bool { return u.UID == 0 && u.GID == 0 && len(u.Groups) == 0 }

// Initramfs describes a busybox initramfs that loads the virtio-fs modules,
// mounts the shares, runs one shell script as User, prints the exit marker
// and powers the guest off.
type Initramfs struct {
	Kernel  Kernel // ModulesDir is required
	Busybox string // static busybox; /bin/busybox when empty
	// Helper is the static cmd/uvfs-helper binary (see
	// BuildHelper). It is installed as /bin/uvfs-helper and is required
	// when User is not root, because busybox cannot switch uid/gid.
	Helper       string
	ExtraModules []string // optional modules (e.g. NinePModules), loaded if found
	// Root, when set, makes a virtio-fs share the guest's root file system; Mounts and Dir are
	// then paths in it.
	Root   *Root
	Mounts []Mount
	// Script is run with /bin/sh (no -e: it decides its own exit status).
	// An empty Script starts an interactive shell on the console.
	Script string
	// Dir is the script's working directory; the first mount's Dir when
	// empty, "/" when there are no mounts.
	Dir   string
	User  User
	Env   []string          // extra "KEY=value" for the script
	Files map[string][]byte // extra files (guest path -> contents), mode 0755
	Gzip  bool              // compress the archive (smaller, slower to build)

	// Skipped lists the optional modules that were not included, after a
	// successful build. It is informational.
	Skipped []string
}

const (
	guestModuleDir = "/lib/modules/uvfs"
	guestScript    = "/etc/uvfs/script.sh"
	guestHelper    = "/bin/uvfs-helper"
)

// BuildFile writes the initramfs to path.
func (r *Initramfs) BuildFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create initramfs: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = r.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write initramfs: %w", cerr)
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// Write writes the initramfs archive to w.
func (r *Initramfs) Write(w io.Writer) error {
	if err := r.validate(); err != nil {
		return err
	}
	busybox := r.Busybox
	if busybox == "" {
		busybox = "/bin/busybox"
	}
	bbData, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("read busybox (install busybox-static): %w", err)
	}
	var helperData []byte
	if r.Helper != "" {
		if helperData, err = os.ReadFile(r.Helper); err != nil {
			return fmt.Errorf("read guest helper (see vm.BuildHelper): %w", err)
		}
	}
	idx, err := loadModuleIndex(r.Kernel.ModulesDir)
	if err != nil {
		return err
	}
	loaded := map[string]bool{}
	required, _, err := idx.resolve(idx.withDependencies(VirtiofsModules, loaded), true)
	if err != nil {
		return err
	}
	extra := r.ExtraModules
	if r.Root != nil && len(r.Root.Overlays) > 0 {
		extra = append(slices.Clip(extra), "overlay")
	}
	optional, skipped, err := idx.resolve(idx.withDependencies(extra, loaded), false)
	if err != nil {
		return err
	}
	r.Skipped = skipped

	var gz *gzip.Writer
	if r.Gzip {
		gz = gzip.NewWriter(w)
		w = gz
	}
	c := NewCpioWriter(w)
	for _, d := range []string{"bin", "sbin", "dev", "proc", "sys", "tmp", "run", "etc", "etc/uvfs", "lib", "lib/modules", guestModuleDir, "root", "mnt"} {
		if err := c.Dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := c.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := c.File("bin/busybox", 0o755, bbData); err != nil {
		return err
	}
	// /init runs before busybox --install, so it names the interpreter directly.
	if err := c.Symlink("bin/sh", "busybox"); err != nil {
		return err
	}
	if helperData != nil {
		if err := c.File(guestHelper, 0o755, helperData); err != nil {
			return err
		}
	}
	var modList strings.Builder
	for _, set := range []struct {
		mods     []moduleFile
		required bool
	}{{required, true}, {optional, false}} {
		for _, m := range set.mods {
			if err := c.File(path.Join(guestModuleDir, m.name+".ko"), 0o644, m.data); err != nil {
				return err
			}
			kind := "optional"
			if set.required {
				kind = "required"
			}
			fmt.Fprintf(&modList, "%s %s\n", m.name, kind)
		}
	}
	files := map[string][]byte{
		"/init":             []byte(r.initScript()),
		guestScript:         []byte(r.Script),
		"/etc/uvfs/modules": []byte(modList.String()),
		"/etc/passwd":       []byte(r.passwd()),
		"/etc/group":        []byte(r.group()),
	}
	for p, data := range r.Files {
		files[p] = data
	}
	for _, p := range sortedKeys(files) {
		if err := mkdirAll(c, path.Dir(p)); err != nil {
			return err
		}
		if err := c.File(p, 0o755, files[p]); err != nil {
			return err
		}
	}
	if err := c.Close(); err != nil {
		return err
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return fmt.Errorf("compress initramfs: %w", err)
		}
	}
	return nil
}

func (r *Initramfs) validate() error {
	if r.Kernel.ModulesDir == "" {
		return fmt.Errorf("kernel %s: %w: pass a kernel named vmlinuz-<release> with /lib/modules/<release> installed", r.Kernel.Path, ErrNoModules)
	}
	if !r.User.isRoot() && r.Helper == "" {
		return fmt.Errorf("running the guest script as uid %d needs the guest helper: set Initramfs.Helper (see vm.BuildHelper)", r.User.UID)
	}
	if r.Root != nil {
		if r.Helper == "" {
			return fmt.Errorf("a guest with a virtio-fs root needs the guest helper to enter it: set Initramfs.Helper (see vm.BuildHelper)")
		}
		if r.Root.Tag == "" {
			return fmt.Errorf("the guest's root share needs a tag")
		}
		for _, d := range append(append([]string{}, r.Root.Scratch...), r.Root.Overlays...) {
			if !path.IsAbs(d) || path.Clean(d) == "/" {
				return fmt.Errorf("root directory %q: need an absolute path below /", d)
			}
		}
	}
	for _, m := range r.Mounts {
		if !path.IsAbs(m.Dir) || m.Tag == "" {
			return fmt.Errorf("mount %q on %q: need a tag and an absolute guest directory", m.Tag, m.Dir)
		}
	}
	for p := range r.Files {
		if !path.IsAbs(p) {
			return fmt.Errorf("initramfs file %q: path must be absolute", p)
		}
	}
	return nil
}

// mkdirAll adds the parents of a file not among the fixed directories.
// Duplicate directory entries are harmless: the kernel's unpacker reuses them.
func mkdirAll(c *CpioWriter, dir string) error {
	if dir == "/" || dir == "." {
		return nil
	}
	if err := mkdirAll(c, path.Dir(dir)); err != nil {
		return err
	}
	return c.Dir(dir, 0o755)
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (r *Initramfs) userName() string {
	if r.User.isRoot() {
		return "root"
	}
	if r.User.Name != "" && r.User.Name != "root" {
		return r.User.Name
	}
	return "user"
}

func (r *Initramfs) home() string {
	switch {
	case r.User.Home != "":
		return r.User.Home
	case r.User.isRoot():
		return "/root"
	}
	return "/"
}

func (r *Initramfs) passwd() string {
	s := "root:x:0:0:root:/root:/bin/sh\n"
	if !r.User.isRoot() && r.User.UID != 0 {
		s += fmt.Sprintf("%s:x:%d:%d:%s:%s:/bin/sh\n", r.userName(), r.User.UID, r.User.GID, r.userName(), r.home())
	}
	return s
}

func (r *Initramfs) group() string {
	s := "root:x:0:\n"
	if r.User.GID != 0 {
		s += fmt.Sprintf("%s:x:%d:\n", r.userName(), r.User.GID)
	}
	return s
}

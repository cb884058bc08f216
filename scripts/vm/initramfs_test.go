package vm_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// TestInitramfsContents builds an initramfs for the installed kernel and
// checks the pieces /init relies on, and that /init is valid shell.
func TestInitramfsContents(t *testing.T) {
	k, err := vm.BaselineKernel()
	if err != nil || k.ModulesDir == "" {
		t.Skipf("no kernel with modules installed: %v", err)
	}
	helper := filepath.Join(t.TempDir(), "helper")
	if err := os.WriteFile(helper, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rd := vm.Initramfs{
		Kernel:       k,
		Helper:       helper,
		ExtraModules: append(append([]string{}, vm.NinePModules...), "no_such_module"),
		Mounts:       []vm.Mount{{Tag: "it's", Dir: "/home/a b", Options: "ro"}},
		Script:       "echo hi\n",
		User:         vm.User{Name: "dev", UID: 1000, GID: 1000, Home: "/home/a b"},
		Files:        map[string][]byte{"/opt/data/x": []byte("payload")},
		Gzip:         true,
	}
	var buf bytes.Buffer
	if err := rd.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(rd.Skipped, " "), "no_such_module") {
		t.Errorf("missing optional module not reported: %q", rd.Skipped)
	}
	zr := exec.Command("gzip", "-dc")
	zr.Stdin = &buf
	raw, err := zr.Output()
	if err != nil {
		t.Fatalf("gzip -dc: %v", err)
	}
	dir := extractCpio(t, raw)
	modules, err := os.ReadFile(filepath.Join(dir, "etc/uvfs/modules"))
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, line := range strings.Split(strings.TrimSpace(string(modules)), "\n") {
		f := strings.Fields(line)
		order = append(order, f[0])
		if _, err := os.Stat(filepath.Join(dir, "lib/modules/uvfs", f[0]+".ko")); err != nil {
			t.Errorf("module %s listed but not in the archive: %v", f[0], err)
		}
	}
	// The virtio-fs modules first, in their order; the 9p ones (plus
	// whatever they depend on here) after them, 9p itself last.
	joined := strings.Join(order, " ")
	if !strings.HasPrefix(joined, strings.Join(vm.VirtiofsModules, " ")+" ") || order[len(order)-1] != "9p" {
		t.Errorf("module load order %q", order)
	}
	for _, m := range vm.NinePModules {
		if !strings.Contains(" "+joined+" ", " "+m+" ") {
			t.Errorf("module %s missing from %q", m, order)
		}
	}
	for path, want := range map[string]string{
		"opt/data/x":         "payload",
		"etc/uvfs/script.sh": "echo hi\n",
		"bin/uvfs-helper":    "#!/bin/sh\n",
		"etc/passwd":         "root:x:0:0:root:/root:/bin/sh\ndev:x:1000:1000:dev:/home/a b:/bin/sh\n",
	} {
		if got, err := os.ReadFile(filepath.Join(dir, path)); err != nil || string(got) != want {
			t.Errorf("%s: %q (err %v), want %q", path, got, err, want)
		}
	}
	init, err := os.ReadFile(filepath.Join(dir, "init"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`mount -t 'virtiofs' -o 'ro' 'it'\''s' '/home/a b'`, "'runas' '1000' '1000' '-'", vm.BeginMarker} {
		if !strings.Contains(string(init), want) {
			t.Errorf("/init lacks %q:\n%s", want, init)
		}
	}
	if out, err := exec.Command("/bin/busybox", "sh", "-n", filepath.Join(dir, "init")).CombinedOutput(); err != nil {
		t.Errorf("/init is not valid shell: %v\n%s", err, out)
	}
}

func TestInitramfsNeedsHelperForNonRoot(t *testing.T) {
	rd := vm.Initramfs{Kernel: vm.Kernel{ModulesDir: t.TempDir()}, User: vm.User{UID: 1000, GID: 1000}}
	if err := rd.Write(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "helper") {
		t.Errorf("want an error asking for the helper, got %v", err)
	}
}

// TestInitramfsHostRoot checks the /init of a guest whose root is a share:
// the overlay module comes along, the root is mounted read-only with the
// guest's own /proc and /run, the shares land inside it, and the script
// runs chrooted there, in its directory, as the user.
func TestInitramfsHostRoot(t *testing.T) {
	k, err := vm.BaselineKernel()
	if err != nil || k.ModulesDir == "" {
		t.Skipf("no kernel with modules installed: %v", err)
	}
	helper := filepath.Join(t.TempDir(), "helper")
	if err := os.WriteFile(helper, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rd := vm.Initramfs{
		Kernel: k,
		Helper: helper,
		Root:   &vm.Root{Tag: "root", Scratch: []string{"/var/tmp"}, Overlays: []string{"/etc"}},
		Mounts: []vm.Mount{{Tag: "home", Dir: "/home/dev"}},
		Script: "make\n",
		Dir:    "/home/dev/proj",
		User:   vm.User{Name: "dev", UID: 1000, GID: 1000, Groups: []uint32{27}, Home: "/home/dev"},
	}
	var buf bytes.Buffer
	if err := rd.Write(&buf); err != nil {
		t.Fatal(err)
	}
	dir := extractCpio(t, buf.Bytes())
	modules, err := os.ReadFile(filepath.Join(dir, "etc/uvfs/modules"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(modules), "overlay ") && !strings.Contains(strings.Join(rd.Skipped, " "), "overlay") {
		t.Errorf("the overlay module is neither loaded nor reported missing: %q", modules)
	}
	init, err := os.ReadFile(filepath.Join(dir, "init"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"mount -t virtiofs -o ro 'root' /newroot",
		"mount -t proc proc /newroot/proc",
		"mount -t tmpfs -o mode=755 tmpfs /newroot/run",
		"lowerdir='/newroot/etc'",
		"mount -t 'virtiofs' 'home' '/newroot/home/dev'",
		"'runas' '-root' '/newroot' '-cwd' '/home/dev/proj' '1000' '1000' '27' '--' '/bin/sh' '/run/uvfs/script.sh'",
		"umount '/newroot/home/dev'",
	} {
		if !strings.Contains(string(init), want) {
			t.Errorf("/init lacks %q:\n%s", want, init)
		}
	}
	if out, err := exec.Command("/bin/busybox", "sh", "-n", filepath.Join(dir, "init")).CombinedOutput(); err != nil {
		t.Errorf("/init is not valid shell: %v\n%s", err, out)
	}
	rd.Helper, rd.User = "", vm.User{} // even guest root enters the new root through the helper
	if err := rd.Write(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "virtio-fs root needs the guest helper") {
		t.Errorf("want an error asking for the helper, got %v", err)
	}
}

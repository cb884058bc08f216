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

// extractCpio unpacks an archive with busybox cpio, an independent reader
// of the newc format, into a new directory.
func extractCpio(t *testing.T, archive []byte) string {
	t.Helper()
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skipf("busybox needed to read cpio archives: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command("/bin/busybox", "cpio", "-i", "-d", "-m")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox cpio -i: %v\n%s", err, out)
	}
	return dir
}

func TestCpioWriterIsReadableByCpio(t *testing.T) {
	var buf bytes.Buffer
	w := vm.NewCpioWriter(&buf)
	odd := strings.Repeat("x", 1001) // lengths that need padding
	steps := []error{
		w.Dir("etc", 0o755),
		w.File("etc/a", 0o644, []byte("alpha\n")),
		w.File("/etc/odd-name-len", 0o600, []byte(odd)),
		w.File("empty", 0o755, nil),
		w.Symlink("etc/link", "a"),
		w.Close(),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not 4-byte aligned", buf.Len())
	}
	dir := extractCpio(t, buf.Bytes())
	for name, want := range map[string]string{"etc/a": "alpha\n", "etc/odd-name-len": odd, "empty": ""} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q (err %v), want %q", name, got, err, want)
		}
	}
	if target, err := os.Readlink(filepath.Join(dir, "etc/link")); err != nil || target != "a" {
		t.Errorf("etc/link -> %q (err %v), want a", target, err)
	}
	for name, want := range map[string]os.FileMode{"etc/odd-name-len": 0o600, "empty": 0o755} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s mode %v (err %v), want %v", name, st.Mode().Perm(), err, want)
		}
	}
}

func TestCpioWriterRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "/", "TRAILER!!!", "a\x00b"} {
		w := vm.NewCpioWriter(&bytes.Buffer{})
		if err := w.File(name, 0o644, nil); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
}

package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeModuleTree writes .ko files, modules.dep and modules.builtin.
func fakeModuleTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"kernel/fs/a.ko":         "A",
		"kernel/fs/b-dash.ko":    "B",
		"kernel/fs/c.ko":         "C",
		"kernel/fs/zst.ko.zst":   "compressed",
		"modules.dep":            "kernel/fs/a.ko: kernel/fs/c.ko kernel/fs/b-dash.ko\nkernel/fs/b-dash.ko:\nkernel/fs/c.ko: kernel/fs/b-dash.ko\nkernel/fs/zst.ko.zst:\n",
		"modules.builtin":        "kernel/fs/inside.ko\n",
		"kernel/fs/notes.txt.ko": "not a module name",
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestModuleDependenciesComeFirst(t *testing.T) {
	idx, err := loadModuleIndex(fakeModuleTree(t))
	if err != nil {
		t.Fatal(err)
	}
	order := idx.withDependencies([]string{"a", "b-dash"}, map[string]bool{})
	if got := strings.Join(order, " "); got != "b_dash c a" {
		t.Errorf("load order %q, want %q", got, "b_dash c a")
	}
	mods, _, err := idx.resolve(append(order, "inside"), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(mods) != 3 || string(mods[0].data) != "B" || string(mods[2].data) != "A" {
		t.Errorf("resolved %+v", mods)
	}
}

func TestModuleResolveMissingAndCompressed(t *testing.T) {
	idx, err := loadModuleIndex(fakeModuleTree(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := idx.resolve([]string{"nope"}, true); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing required module: %v", err)
	}
	if _, _, err := idx.resolve([]string{"zst"}, true); err == nil || !strings.Contains(err.Error(), "inflate kernel module") {
		t.Errorf("a zstd module that does not inflate must be refused with a reason: %v", err)
	}
	mods, skipped, err := idx.resolve([]string{"nope", "zst", "a"}, false)
	if err != nil || len(mods) != 1 || len(skipped) != 2 {
		t.Errorf("optional: mods %d skipped %q err %v", len(mods), skipped, err)
	}
}

// TestModuleXZ reads a .ko.xz module (Debian's kernels since 6.12) as the
// ELF file inside, and refuses one that is not ELF.
func TestModuleXZ(t *testing.T) {
	if _, err := exec.LookPath("xz"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and xz is missing (apt-get install xz-utils): %v", err)
		}
		t.Skipf("xz missing: %v", err)
	}
	dir := t.TempDir()
	write := func(name, content string) {
		cmd := exec.Command("xz", "-c")
		cmd.Stdin = strings.NewReader(content)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("fuse.ko.xz", "\x7fELF module")
	write("text.ko.xz", "not elf")
	idx, err := loadModuleIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	mods, _, err := idx.resolve([]string{"fuse"}, true)
	if err != nil || len(mods) != 1 || string(mods[0].data) != "\x7fELF module" {
		t.Fatalf("fuse.ko.xz: %+v, %v", mods, err)
	}
	if _, _, err := idx.resolve([]string{"text"}, true); err == nil || !strings.Contains(err.Error(), "ELF") {
		t.Errorf("a .ko.xz that is not ELF: %v", err)
	}
}

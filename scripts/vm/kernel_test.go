package vm

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFindKernelPrefersRunningThenNewest(t *testing.T) {
	root := t.TempDir()
	boot := filepath.Join(root, "boot")
	mods := filepath.Join(root, "modules")
	if err := os.MkdirAll(boot, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"6.1.0-9-amd64", "6.1.0-10-amd64", "5.10.0-30-amd64"} {
		if err := os.MkdirAll(filepath.Join(mods, v), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(boot, "vmlinuz-"+v), []byte("k"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct{ release, explicit, wantVersion string }{
		{"6.1.0-9-amd64", "", "6.1.0-9-amd64"}, // the running kernel wins
		{"6.18.4-other", "", "6.1.0-10-amd64"}, // else the newest: 10 > 9 numerically
		{"", filepath.Join(boot, "vmlinuz-5.10.0-30-amd64"), "5.10.0-30-amd64"},
	}
	for _, c := range cases {
		k, err := findKernel(boot, mods, c.release, c.explicit)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if k.Version != c.wantVersion || k.Path != filepath.Join(boot, "vmlinuz-"+c.wantVersion) || k.ModulesDir != filepath.Join(mods, c.wantVersion) {
			t.Errorf("%+v: got %+v", c, k)
		}
	}
	if _, err := findKernel(boot, mods, "", filepath.Join(boot, "missing")); err == nil {
		t.Error("a missing explicit kernel was accepted")
	}
	if _, err := findKernel(t.TempDir(), mods, "", ""); err == nil {
		t.Error("an empty /boot gave a kernel")
	}
}

func TestVersionLess(t *testing.T) {
	ordered := []string{"5.10.0-30-amd64", "6.1.0-9-amd64", "6.1.0-10-amd64", "6.10.0-1-amd64", "6.10.0-1-amd64-rt"}
	for i := range ordered {
		for j := range ordered {
			if got := versionLess(ordered[i], ordered[j]); got != (i < j) {
				t.Errorf("versionLess(%q, %q) = %v", ordered[i], ordered[j], got)
			}
		}
	}
}

// TestFindKernelSeries picks the newest kernel of one series, not a newer
// series installed beside it, and finds the module tree of a kernel package
// unpacked into a directory beside its image.
func TestFindKernelSeries(t *testing.T) {
	root := t.TempDir()
	mods := filepath.Join(root, "lib", "modules")
	unpacked := filepath.Join(root, "opt")
	for _, d := range []string{filepath.Join(root, "boot"), filepath.Join(unpacked, "boot"), filepath.Join(unpacked, "lib", "modules", "6.12.95+deb12-amd64")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []string{"6.1.0-9-amd64", "6.1.0-57-amd64", "6.12.9-amd64", "6.10.0-1-amd64"} {
		if err := os.MkdirAll(filepath.Join(mods, v), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "boot", "vmlinuz-"+v), []byte("k"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(unpacked, "boot", "vmlinuz-6.12.95+deb12-amd64"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := findKernelSeries(filepath.Join(root, "boot"), mods, "6.1")
	if err != nil || k.Version != "6.1.0-57-amd64" || k.ModulesDir != filepath.Join(mods, "6.1.0-57-amd64") {
		t.Errorf("series 6.1: %+v, %v", k, err)
	}
	k, err = findKernelSeries(filepath.Join(unpacked, "boot"), mods, "6.12")
	if err != nil || k.Version != "6.12.95+deb12-amd64" || k.ModulesDir != filepath.Join(unpacked, "lib", "modules", "6.12.95+deb12-amd64") {
		t.Errorf("unpacked 6.12: %+v, %v", k, err)
	}
	if _, err := findKernelSeries(filepath.Join(root, "boot"), mods, "5.10"); err == nil {
		t.Error("a missing series gave a kernel")
	}
}

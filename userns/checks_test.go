package userns

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fakePaths points every file at a fresh temp dir; tests fill in what
// they need, the rest is missing.
func fakePaths(t *testing.T) (Paths, string) {
	dir := t.TempDir()
	return Paths{
		MaxUserNamespaces:       filepath.Join(dir, "max_user_namespaces"),
		UnprivilegedUsernsClone: filepath.Join(dir, "unprivileged_userns_clone"),
		AppArmorRestrict:        filepath.Join(dir, "apparmor_restrict_unprivileged_userns"),
		SubUID:                  filepath.Join(dir, "subuid"),
		SubGID:                  filepath.Join(dir, "subgid"),
		Passwd:                  filepath.Join(dir, "passwd"),
		NewUIDMap:               filepath.Join(dir, "newuidmap"),
		NewGIDMap:               filepath.Join(dir, "newgidmap"),
		Proc:                    filepath.Join(dir, "proc"),
	}, dir
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestCheckUsernsEnabled(t *testing.T) {
	p, _ := fakePaths(t)
	if err := checkUsernsEnabled(p); err != nil {
		t.Fatalf("missing sysctl files: %v, want nil", err)
	}
	writeFile(t, p.MaxUserNamespaces, "15000\n", 0o644)
	writeFile(t, p.UnprivilegedUsernsClone, "1\n", 0o644)
	if err := checkUsernsEnabled(p); err != nil {
		t.Fatalf("enabled: %v", err)
	}
	writeFile(t, p.UnprivilegedUsernsClone, "0\n", 0o644)
	err := checkUsernsEnabled(p)
	t.Logf("unprivileged_userns_clone=0: %v", err)
	if err == nil || !strings.Contains(err.Error(), "sysctl -w kernel.unprivileged_userns_clone=1") {
		t.Errorf("error = %v, want the sysctl fix", err)
	}
	writeFile(t, p.MaxUserNamespaces, "0\n", 0o644)
	err = checkUsernsEnabled(p)
	t.Logf("max_user_namespaces=0: %v", err)
	if err == nil || !strings.Contains(err.Error(), "sysctl -w user.max_user_namespaces=15000") || !strings.Contains(err.Error(), p.MaxUserNamespaces) {
		t.Errorf("error = %v, want the sysctl fix naming the file", err)
	}
}

func TestExplainCloneError(t *testing.T) {
	p, _ := fakePaths(t)
	writeFile(t, p.MaxUserNamespaces, "0\n", 0o644)
	err := explainCloneError(p, syscall.ENOSPC)
	t.Log(err)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "user.max_user_namespaces") {
		t.Errorf("error = %v, want ENOSPC wrapped with the sysctl fix", err)
	}
	p2, _ := fakePaths(t)
	err = explainCloneError(p2, syscall.EPERM)
	if !errors.Is(err, syscall.EPERM) || !strings.Contains(err.Error(), "run uvfsd as root") {
		t.Errorf("error = %v, want EPERM wrapped with advice", err)
	}
}

func TestExplainNamespaceEPERM(t *testing.T) {
	p, _ := fakePaths(t)
	writeFile(t, p.AppArmorRestrict, "1\n", 0o644)
	err := explainNamespaceEPERM(p, &os.PathError{Op: "mount", Path: "/", Err: syscall.EPERM})
	t.Log(err)
	for _, want := range []string{"AppArmor", p.AppArmorRestrict, "userns,", "apparmor_parser -r", "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if !errors.Is(err, syscall.EPERM) {
		t.Errorf("error does not wrap EPERM")
	}
	writeFile(t, p.AppArmorRestrict, "0\n", 0o644)
	if err := explainNamespaceEPERM(p, syscall.EPERM); strings.Contains(err.Error(), "AppArmor restricts") || !strings.Contains(err.Error(), "--sandbox=chroot") {
		t.Errorf("without the AppArmor sysctl: %v", err)
	}
	if err := explainNamespaceEPERM(p, syscall.ENOENT); err != syscall.ENOENT {
		t.Errorf("ENOENT changed to %v", err)
	}
}

func TestFindHelper(t *testing.T) {
	p, dir := fakePaths(t)
	_, err := findHelper(p.NewUIDMap, "newuidmap")
	t.Logf("missing: %v", err)
	if err == nil || !strings.Contains(err.Error(), "apt install uidmap") {
		t.Errorf("missing helper: error = %v, want install advice", err)
	}
	_, err = findHelper("uvfsd-no-such-helper", "newuidmap")
	if err == nil || !strings.Contains(err.Error(), "/usr/bin") {
		t.Errorf("bare name not found: %v", err)
	}

	writeFile(t, p.NewUIDMap, "#!/bin/sh\n", 0o755)
	_, err = findHelper(p.NewUIDMap, "newuidmap")
	t.Logf("not setuid: %v", err)
	if err == nil || !strings.Contains(err.Error(), "chmod u+s "+p.NewUIDMap) {
		t.Errorf("plain helper: error = %v, want chmod advice", err)
	}

	if os.Geteuid() != 0 {
		t.Skip("setuid-root helper case needs root to create a setuid-root file")
	}
	setuid := filepath.Join(dir, "setuid-helper")
	writeFile(t, setuid, "#!/bin/sh\n", os.ModeSetuid|0o755)
	if got, err := findHelper(setuid, "newuidmap"); err != nil || got != setuid {
		t.Errorf("setuid root helper: %q, %v", got, err)
	}
}

func TestUserName(t *testing.T) {
	p, _ := fakePaths(t)
	writeFile(t, p.Passwd, "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbroken\n", 0o644)
	if got := userName(p.Passwd, 1000); got != "alice" {
		t.Errorf("userName(1000) = %q", got)
	}
	if got := userName(p.Passwd, 1001); got != "" {
		t.Errorf("userName(1001) = %q, want none", got)
	}
	if got := userName(p.Passwd+".missing", 0); got != "" {
		t.Errorf("missing passwd: %q", got)
	}
}

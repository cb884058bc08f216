package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/scripts/vm"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

// The socket belongs to the process the user started, outside any namespace or sandbox. These
// run the binary as the unprivileged user with the default sandbox (a user and mount namespace,
// pivot_root into the share), where the socket's path means something else once the daemon
// serves.

// TestUvfsdRemovesItsSocketNotTheShares: on SIGTERM and after the front-end disconnects, uvfsd
// removes its socket, and not the file at the same path inside the share.
func TestUvfsdRemovesItsSocketNotTheShares(t *testing.T) {
	bin := buildUvfsd(t)
	u := e2eUser(t, userWithSubIDs)
	for _, end := range []string{"SIGTERM", "front-end disconnect"} {
		t.Run(strings.ReplaceAll(end, " ", "_"), func(t *testing.T) {
			d, socket, shared := startUvfsdAs(t, bin, u)
			defer d.Stop(5 * time.Second)
			// What the socket's path names after pivot_root into the share.
			decoy := filepath.Join(shared, socket)
			if err := os.MkdirAll(filepath.Dir(decoy), 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(decoy, []byte("precious"), 0o666); err != nil {
				t.Fatal(err)
			}
			for p := decoy; p != shared; p = filepath.Dir(p) { // the daemon's to delete
				u.chown(t, p)
			}
			if end == "SIGTERM" {
				d.Stop(5 * time.Second)
			} else {
				f, err := frontend.Dial(socket, frontend.Options{MemSize: 1 << 20, QueueSize: 8, Timeout: 5 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				f.Close()
				if err := d.Wait(10 * time.Second); err != nil {
					t.Fatalf("uvfsd after the front-end left: %v\n%s", err, d.Output())
				}
			}
			if _, err := os.Lstat(socket); !os.IsNotExist(err) {
				t.Errorf("socket still there after %s: %v", end, err)
			}
			if b, err := os.ReadFile(decoy); err != nil || string(b) != "precious" {
				t.Errorf("the share's file at the socket's path after %s: %q, %v", end, b, err)
			}
		})
	}
}

// TestUvfsdListensOnInheritedFD3: --fd=3, the number socket activation uses, survives the re-exec
// into the namespace.
func TestUvfsdListensOnInheritedFD3(t *testing.T) {
	bin := buildUvfsd(t)
	u := e2eUser(t, userWithSubIDs)
	shared := makeDir(t, "uvfs-e2e-share-", 0o755, u)
	socket := filepath.Join(makeDir(t, "uvfs-e2e-sock-", 0o755, u), "vhost.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	lf, err := l.File()
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--fd=3", "--shared-dir="+shared)
	cmd.ExtraFiles = []*os.File{lf}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential(), Pdeathsig: syscall.SIGKILL}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	f, err := frontend.Dial(socket, frontend.Options{MemSize: 1 << 20, QueueSize: 8, Timeout: 10 * time.Second})
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("front-end on the inherited socket: %v\nuvfsd:\n%s", err, out.String())
	}
	f.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("uvfsd --fd=3: %v\n%s", err, out.String())
	}
}

// TestUvfsdSocketGroupIsAHostGroup: --socket-group names a group of the host, also when the daemon
// serves from a user namespace, where the same number would be another group.
func TestUvfsdSocketGroupIsAHostGroup(t *testing.T) {
	bin := buildUvfsd(t)
	u := e2eUser(t, userWithSubIDs)
	shared := makeDir(t, "uvfs-e2e-share-", 0o755, u)
	socket := filepath.Join(makeDir(t, "uvfs-e2e-sock-", 0o755, u), "vhost.sock")
	d := &vm.Daemon{Path: bin, Socket: socket, Credential: u.Credential(),
		Args: []string{"--socket-path=" + socket, "--shared-dir=" + shared, "--socket-group=" + strconv.Itoa(int(u.GID))}}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer d.Stop(5 * time.Second)
	var st syscall.Stat_t
	if err := syscall.Lstat(socket, &st); err != nil {
		t.Fatal(err)
	}
	if st.Gid != u.GID || st.Mode&0o777 != 0o660 {
		t.Errorf("socket group %d mode %o, want group %d mode 660", st.Gid, st.Mode&0o777, u.GID)
	}
}

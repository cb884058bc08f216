package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"html"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// TestLibvirtUvfsd has libvirt (Debian bookworm's 9.0, qemu:///system)
// define and start a TCG domain whose <filesystem> devices are served by
// uvfsd, named in <binary path>: one with libvirt's defaults, one with
// every daemon option libvirt 9.0 has, one whose path has a comma. The
// guest mounts them, reads a host file and writes one in each, and powers
// off; the domain must end shut off with reason "shutdown" and every
// daemon must exit.
func TestLibvirtUvfsd(t *testing.T) { runLibvirt(t, uvfsdClient(t)) }

// TestLibvirtRustVirtiofsd runs the same with the Rust virtiofsd 1.13.2: it
// proves the harness. It refuses libvirt's -o flock and -o posix_lock, and
// a share whose path has a comma (libvirt writes it ",,": "Invalid compat
// argument"), so its domain has neither.
func TestLibvirtRustVirtiofsd(t *testing.T) { runLibvirt(t, rustVirtiofsdClient(t)) }

const libvirtURI = "qemu:///system"

// libvirtFS is one <filesystem> of the test domain.
type libvirtFS struct {
	tag    string
	binary string // what follows <binary path='...': attributes, '>', children
	// args matches the command line libvirt 9.0 gives the daemon for it
	// (SOURCE stands for the shared directory).
	args string
	dir  string
}

// libvirtGuestScript reads and writes in every share; TAGS and TOKEN come
// from the environment.
const libvirtGuestScript = `for tag in $TAGS; do
	echo "READ $tag $(cat /mnt/$tag/from-host)"
	echo "$TOKEN $tag" > /mnt/$tag/from-guest || echo "FAIL: $tag: cannot write from-guest"
done
sync
`

func runLibvirt(t *testing.T, d clientDaemon) {
	requireRoot(t, "libvirt's qemu:///system runs as root")
	g := requireGuestTools(t)
	for _, tool := range []string{"virsh", "libvirtd", "virtlogd"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(t, "libvirt not installed (apt-get install libvirt-daemon-system libvirt-clients; see .ci/install-clients): %v", err)
		}
	}
	ensureLibvirtd(t)

	root := currentUser(t)
	w := writeWrapper(t, d, root)
	every := ` xattr='on'><cache mode='none'/><sandbox mode='chroot'/><thread_pool size='16'/>`
	everyOpts := `cache=none,sandbox=chroot,xattr`
	if d.locks {
		every += `<lock posix='on' flock='on'/>`
		everyOpts += `,flock,posix_lock`
	}
	fss := []libvirtFS{
		{tag: "plain", binary: ">", args: `--fd=[0-9]+ -o source=SOURCE`},
		{tag: "every", binary: every, args: `--fd=[0-9]+ -o source=SOURCE,` + everyOpts + ` --thread-pool-size=16`},
	}
	if d.commas {
		// libvirt passes a comma in the path as ",,".
		fss = append(fss, libvirtFS{tag: "comma", binary: ">", args: `--fd=[0-9]+ -o source=SOURCE`})
	}
	token := make([]byte, 8)
	rand.Read(token)
	hostData := "host " + hex.EncodeToString(token)
	var tags []string
	var mounts []vm.Mount
	var xmlFS strings.Builder
	for i := range fss {
		fs := &fss[i]
		fs.dir = makeDir(t, "uvfs-e2e-libvirt-"+fs.tag+"-", 0o755, root)
		if fs.tag == "comma" {
			fs.dir = makeDir(t, "uvfs-e2e-libvirt-a,b-", 0o755, root)
		}
		if err := os.WriteFile(filepath.Join(fs.dir, "from-host"), []byte(hostData+" "+fs.tag+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		tags = append(tags, fs.tag)
		mounts = append(mounts, vm.Mount{Tag: fs.tag, Dir: "/mnt/" + fs.tag})
		fmt.Fprintf(&xmlFS, `
    <filesystem type='mount' accessmode='passthrough'>
      <driver type='virtiofs' queue='1024'/>
      <binary path='%s'%s</binary>
      <source dir='%s'/>
      <target dir='%s'/>
    </filesystem>`, html.EscapeString(w.path), fs.binary, html.EscapeString(fs.dir), fs.tag)
	}

	// QEMU runs as libvirt-qemu: kernel, initramfs and console log live
	// in a world-readable directory (libvirt relabels them for QEMU).
	work := makeDir(t, "uvfs-e2e-libvirt-", 0o755, root)
	kernel := filepath.Join(work, "kernel")
	bootKernel := g.bootKernel
	if bootKernel == "" {
		bootKernel = g.kernel.Path
	}
	copyFile(t, bootKernel, kernel)
	rd := vm.Initramfs{Kernel: g.kernel, Helper: g.helper, Mounts: mounts, Dir: "/", Script: libvirtGuestScript,
		Env: []string{"TAGS=" + strings.Join(tags, " "), "TOKEN=" + hex.EncodeToString(token)}}
	initrd := filepath.Join(work, "initrd")
	if err := rd.BuildFile(initrd); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(initrd, 0o644); err != nil {
		t.Fatal(err)
	}
	console := filepath.Join(work, "console.log")

	name := "uvfs-e2e-" + hex.EncodeToString(token[:4])
	domain := fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>512</memory>
  <vcpu>2</vcpu>
  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%s</kernel>
    <initrd>%s</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='maximum'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>%s
    <serial type='file'>
      <source path='%s'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
`, name, html.EscapeString(kernel), html.EscapeString(initrd), xmlFS.String(), html.EscapeString(console))
	domainXML := filepath.Join(work, "domain.xml")
	if err := os.WriteFile(domainXML, []byte(domain), 0o644); err != nil {
		t.Fatal(err)
	}

	if out, err := virsh("define", domainXML); err != nil {
		t.Fatalf("virsh define: %v\n%s\n%s", err, out, domain)
	}
	t.Cleanup(func() {
		virsh("destroy", name) // fails when it is not running
		if out, err := virsh("undefine", name); err != nil {
			t.Errorf("virsh undefine %s: %v\n%s", name, err, out)
		}
		logs, _ := filepath.Glob(filepath.Join("/var/log/libvirt/qemu", name+"*.log"))
		for _, l := range logs {
			os.Remove(l)
		}
	})
	start := time.Now()
	if out, err := virsh("start", name); err != nil {
		t.Fatalf("virsh start: %v\n%s\n--- libvirt's logs ---\n%s", err, out, libvirtLogs(name))
	}
	state, err := waitShutOff(name, 10*time.Minute)
	t.Logf("domain with %s ran %v: %q", d.name, time.Since(start).Round(time.Millisecond), state)
	data, _ := os.ReadFile(console)
	res := vm.ParseConsole(data)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("domain XML:\n%s", domain)
			t.Logf("console:\n%s", strings.Join(res.Console, "\n"))
			t.Logf("libvirt's logs:\n%s", libvirtLogs(name))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// The guest powered itself off: with ACPI, QEMU exits and libvirt
	// records a shutdown (not a crash, and not destroyed by us).
	if state != "shut off (shutdown)" {
		t.Errorf("domain state %q, want %q", state, "shut off (shutdown)")
	}
	if !res.Exited || res.ExitStatus != 0 || res.InitError != "" {
		t.Errorf("guest script: exited %v with status %d (init error %q)", res.Exited, res.ExitStatus, res.InitError)
	}
	for _, l := range res.Output {
		if strings.HasPrefix(l, "FAIL:") {
			t.Errorf("guest: %s", l)
		}
	}
	read := guestFields(res, "READ")

	starts := w.starts(t)
	if len(starts) != len(fss) {
		t.Errorf("libvirt started the daemon %d times, want %d: %v", len(starts), len(fss), starts)
	}
	for _, fs := range fss {
		if got, want := strings.Join(read[fs.tag], " "), hostData+" "+fs.tag; got != want {
			t.Errorf("%s: the guest read %q from the host's file, want %q", fs.tag, got, want)
		}
		got, err := os.ReadFile(filepath.Join(fs.dir, "from-guest"))
		if want := hex.EncodeToString(token) + " " + fs.tag + "\n"; err != nil || string(got) != want {
			t.Errorf("%s: the file the guest wrote: %q, %v; want %q", fs.tag, got, err, want)
		}
		i := slices.IndexFunc(starts, func(s daemonStart) bool {
			escaped := "source=" + strings.ReplaceAll(fs.dir, ",", ",,")
			return slices.ContainsFunc(s.args, func(a string) bool { return a == escaped || strings.HasPrefix(a, escaped+",") })
		})
		if i < 0 {
			t.Errorf("%s: libvirt started no daemon for %s: %v", fs.tag, fs.dir, starts)
			continue
		}
		s := starts[i]
		line := strings.Join(s.args, " ")
		t.Logf("%s: libvirt ran %s %s", fs.tag, d.name, line)
		escaped := strings.ReplaceAll(fs.dir, ",", ",,")
		re := regexp.MustCompile("^" + strings.ReplaceAll(fs.args, "SOURCE", regexp.QuoteMeta(escaped)) + "$")
		if !re.MatchString(line) {
			t.Errorf("%s: libvirt ran the daemon as %q, want it to match %q", fs.tag, line, re)
		}
		if err := waitExited(s.pid, 30*time.Second); err != nil {
			t.Errorf("%s: %s (pid %d) did not exit after the domain shut down: %v", fs.tag, d.name, s.pid, err)
		}
	}
	// libvirt keeps each daemon's output in a log of its own.
	for i, fs := range fss {
		logFile := filepath.Join("/var/log/libvirt/qemu", fmt.Sprintf("%s-fs%d-virtiofsd.log", name, i))
		data, err := os.ReadFile(logFile)
		if err != nil {
			t.Errorf("%s: %v", fs.tag, err)
			continue
		}
		t.Logf("%s: %s's log:\n%s", fs.tag, d.name, data)
		checkServedLog(t, d, strings.Split(string(data), "\n"), fs.dir, "")
	}
}

// ensureLibvirtd starts virtlogd and libvirtd (as daemons, left running
// for later tests) unless qemu:///system answers; there is no systemd to
// start them on these machines.
func ensureLibvirtd(t *testing.T) {
	t.Helper()
	if _, err := virsh("version"); err == nil {
		return
	}
	for _, daemon := range []string{"virtlogd", "libvirtd"} {
		if out, err := exec.Command(daemon, "-d").CombinedOutput(); err != nil {
			t.Fatalf("%s -d: %v\n%s", daemon, err, out)
		}
	}
	var out string
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if out, err = virsh("version"); err == nil {
			return
		}
	}
	t.Fatalf("libvirtd started, but %s does not answer: %v\n%s", libvirtURI, err, out)
}

// virsh runs virsh on qemu:///system.
func virsh(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "virsh", append([]string{"-c", libvirtURI}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// waitShutOff waits until the domain is shut off and returns "virsh
// domstate --reason". On timeout it destroys the domain.
func waitShutOff(name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		state, err := virsh("domstate", "--reason", name)
		if err != nil {
			return state, fmt.Errorf("virsh domstate: %v: %s", err, state)
		}
		if strings.HasPrefix(state, "shut off") {
			return state, nil
		}
		if time.Now().After(deadline) {
			virsh("destroy", name)
			return state, fmt.Errorf("domain %s still %q after %v (destroyed)", name, state, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// libvirtLogs returns libvirt's logs of the domain: QEMU's and each daemon's.
func libvirtLogs(name string) string {
	logs, _ := filepath.Glob(filepath.Join("/var/log/libvirt/qemu", name+"*.log"))
	var b strings.Builder
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		fmt.Fprintf(&b, "=== %s\n%s\n", l, data)
	}
	return b.String()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

package e2e

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// parallelScript is the parallel workload: one guest process per vCPU, pinned to it, each
// creating, stat-ing and reading back its own files, then one large read split over the vCPUs.
// Since Linux 6.11 the virtio-fs driver sends a CPU's requests on the request queue mapped to it.
const parallelScript = `
cpus=$(nproc)
echo "CPUS $cpus"
cat > /tmp/worker.sh <<'EOF'
d=/mnt/w$1
mkdir $d || { echo "FAIL: mkdir $d"; exit; }
for j in $(seq 1 $FILES); do
	echo "worker $1 file $j" > $d/f$j || echo "FAIL: create $d/f$j"
done
n=0
for j in $(seq 1 $FILES); do
	[ "$(stat -c %s $d/f$j)" = "$(echo "worker $1 file $j" | wc -c)" ] || echo "FAIL: stat $d/f$j"
	[ "$(cat $d/f$j)" = "worker $1 file $j" ] && n=$((n+1))
done
echo "WORKER $1 read $n"
EOF
i=0
while [ $i -lt $cpus ]; do
	taskset -c $i sh /tmp/worker.sh $i &
	i=$((i+1))
done
wait
# The large read: each vCPU reads its share of the big file.
chunk=$((BIG_MB / cpus))
i=0
while [ $i -lt $cpus ]; do
	taskset -c $i sh -c "dd if=/mnt/big bs=1M skip=$((i*chunk)) count=$chunk 2>/dev/null | md5sum | sed 's/^/PART $i /'" &
	i=$((i+1))
done
wait
`

// TestMultiqueueParallelWorkload boots a Linux 6.12 guest with 2 vCPUs on QEMU 10 with a
// vhost-user-fs device of num-request-queues=2 against rootless uvfsd with default flags: uvfsd
// serves the queues QEMU sets up, the guest's processes on both vCPUs get their files right, and
// uvfsd's per-queue counters show both request queues served.
func TestMultiqueueParallelWorkload(t *testing.T) {
	requireStack(t, stackQEMU10)
	const files, bigMB = 100, 32
	big := make([]byte, bigMB<<20)
	rand.New(rand.NewSource(1)).Read(big)
	user := e2eUser(t, userWithSubIDs)
	spec := uvfsdSpec(t, user)
	spec.stack, spec.requestQueues, spec.cpus = stackQEMU10, 2, 2
	spec.setup = func(t *testing.T, shared string) {
		p := filepath.Join(shared, "big")
		if err := os.WriteFile(p, big, 0o644); err != nil {
			t.Fatal(err)
		}
		user.chown(t, p)
	}
	b := bootWithDaemon(t, spec, parallelScript, []string{fmt.Sprintf("FILES=%d", files), fmt.Sprintf("BIG_MB=%d", bigMB)})
	checkGuestOutput(t, b)
	workers, parts := 0, 0
	for _, l := range b.res.Output {
		f := strings.Fields(l)
		switch {
		case len(f) == 4 && f[0] == "WORKER":
			workers++
			if f[3] != strconv.Itoa(files) {
				t.Errorf("guest: %s, want %d files read back", l, files)
			}
		case len(f) >= 3 && f[0] == "PART":
			parts++
			i, _ := strconv.Atoi(f[1])
			chunk := bigMB / 2 << 20
			sum := md5.Sum(big[i*chunk : (i+1)*chunk])
			if f[2] != hex.EncodeToString(sum[:]) {
				t.Errorf("guest read part %d of the big file with md5 %s, want %x", i, f[2], sum)
			}
		}
	}
	if workers != 2 || parts != 2 {
		t.Errorf("guest reported %d workers and %d parts of the big read, want 2 and 2", workers, parts)
	}
	counts := queueCounts(t, b.daemonOutput)
	t.Logf("uvfsd: requests per queue %v", counts)
	if len(counts) != 3 {
		t.Fatalf("uvfsd served %d queues (%v), want the hiprio queue and 2 request queues", len(counts), counts)
	}
	for q := 1; q <= 2; q++ {
		// Each vCPU's worker alone sends hundreds of requests (150 creates, stats and reads).
		if counts[q] < files {
			t.Errorf("request queue %d served %d requests, want at least %d: the guest's requests were not spread", q, counts[q], files)
		}
	}
}

var queueCountsLine = regexp.MustCompile(`requests per queue: hiprio=(\d+)((?: \d+=\d+)*)`)

// queueCounts reads uvfsd's last "requests per queue: hiprio=N 1=N 2=N" line: index 0 is the
// hiprio queue.
func queueCounts(t *testing.T, output string) []uint64 {
	t.Helper()
	m := queueCountsLine.FindAllStringSubmatch(output, -1)
	if m == nil {
		t.Fatalf("uvfsd logged no requests per queue:\n%s", output)
	}
	last := m[len(m)-1]
	hiprio, _ := strconv.ParseUint(last[1], 10, 64)
	counts := []uint64{hiprio}
	for _, f := range strings.Fields(last[2]) {
		_, n, _ := strings.Cut(f, "=")
		v, _ := strconv.ParseUint(n, 10, 64)
		counts = append(counts, v)
	}
	return counts
}

// TestMultiqueueBeyondLimitFailsAtOnce starts uvfsd with --num-request-queues=1 under a device of
// num-request-queues=2: uvfsd must exit at once with a message that says how to fix it, instead
// of leaving the second request queue unserved and the guest's mount hanging.
func TestMultiqueueBeyondLimitFailsAtOnce(t *testing.T) {
	g := requireStack(t, stackQEMU10)
	user := e2eUser(t, userWithSubIDs)
	shared := makeDir(t, "uvfs-e2e-share-", 0o755, user)
	socket := filepath.Join(makeDir(t, "uvfs-e2e-sock-", 0o700, user), "vhost.sock")
	d := &vm.Daemon{
		Path:       buildUvfsd(t),
		Args:       []string{"--socket-path=" + socket, "--shared-dir=" + shared, "--num-request-queues=1"},
		Socket:     socket,
		Credential: user.Credential(),
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(5 * time.Second) })
	rd := vm.Initramfs{Kernel: g.kernel, Helper: g.helper, Mounts: []vm.Mount{{Tag: shareTag, Dir: "/mnt"}}, Script: "echo mounted"}
	initrd := filepath.Join(t.TempDir(), "initrd")
	if err := rd.BuildFile(initrd); err != nil {
		t.Fatal(err)
	}
	machine := vm.VM{QEMU: g.qemu, Kernel: g.bootKernel, Initrd: initrd, CPUs: 2, Timeout: 3 * time.Minute,
		FS: []vm.FSDevice{{Socket: socket, Tag: shareTag, RequestQueues: 2}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() {
		_, err := machine.Run(ctx)
		ran <- err
	}()
	start := time.Now()
	err := d.Wait(2 * time.Minute)
	cancel()
	<-ran
	out := d.Output()
	if err == nil {
		t.Fatalf("uvfsd exited 0 under a device with more request queues than it serves:\n%s", out)
	}
	t.Logf("uvfsd exited after %v: %v", time.Since(start).Round(time.Millisecond), err)
	for _, want := range []string{"request queue 2", "only 1 request queues are served", "--num-request-queues=2"} {
		if !strings.Contains(out, want) {
			t.Errorf("uvfsd's message lacks %q:\n%s", want, out)
		}
	}
}

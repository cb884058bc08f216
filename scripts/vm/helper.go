package vm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// HelperPackage is the import path of the static guest helper.
const HelperPackage = "github.com/uvfsd/uvfsd/cmd/uvfs-helper"

// BuildHelper compiles the guest helper (see Initramfs.Helper) to out as a
// static binary. It needs the Go toolchain and the uvfsd module source: it
// builds in the directory of this source file when that exists (tests, a
// source checkout) and in the current directory otherwise.
func BuildHelper(ctx context.Context, out string) error {
	return GoBuild(ctx, out, HelperPackage)
}

// GoBuild compiles pkg, a package of the uvfsd module, to out with cgo off.
func GoBuild(ctx context.Context, out, pkg string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
		if _, statErr := os.Stat(goBin); statErr != nil {
			return fmt.Errorf("building %s needs the Go toolchain: put go on PATH: %w", pkg, err)
		}
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-buildvcs=false", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if _, file, _, ok := runtime.Caller(0); ok {
		if st, err := os.Stat(filepath.Dir(file)); err == nil && st.IsDir() {
			cmd.Dir = filepath.Dir(file)
		}
	}
	var outBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, outBuf.Bytes())
	}
	return nil
}

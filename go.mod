module github.com/uvfsd/uvfsd

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/spf13/pflag v1.0.10
	golang.org/x/sys v0.49.0
)

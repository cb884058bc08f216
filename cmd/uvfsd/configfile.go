package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/BurntSushi/toml"
)

// The TOML config file: every key is a long flag name, set through the same flagSet as the
// command line.

// configFilePath picks the config file: --config (which must exist), else
// the first of the XDG and ~/.config locations that exists, else none.
func configFilePath(explicit string, getenv func(string) string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("--config: %w", err)
		}
		return explicit, nil
	}
	var candidates []string
	if x := getenv("XDG_CONFIG_HOME"); filepath.IsAbs(x) { // the XDG spec ignores relative paths
		candidates = append(candidates, filepath.Join(x, "uvfsd", "config.toml"))
	}
	if h := getenv("HOME"); h != "" {
		candidates = append(candidates, filepath.Join(h, ".config", "uvfsd", "config.toml"))
	}
	for _, c := range candidates {
		_, err := os.Stat(c)
		if err == nil {
			return c, nil
		}
		// A default location we may not even look into (HOME left over from another user, as
		// with su or setpriv) holds no config of ours.
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, os.ErrPermission) {
			return "", fmt.Errorf("config file: %w", err)
		}
	}
	return "", nil
}

// commandLineOnly are flags that make no sense in a config file.
var commandLineOnly = map[string]bool{
	"help": true, "version": true, "print-capabilities": true, "config": true,
	"option": true, "debug": true, "foreground": true, "daemonize": true, "socket": true,
}

// overrideGroups: a command-line flag replaces the file's value for every
// key of its group, so --fd on the command line beats socket-path in the file.
var overrideGroups = map[string]string{
	"socket-path": "listen", "socket": "listen", "fd": "listen",
	"killpriv-v2": "killpriv", "no-killpriv-v2": "killpriv",
	"announce-submounts": "announce-submounts", "no-announce-submounts": "announce-submounts",
}

func overrideGroup(name string) string {
	if g, ok := overrideGroups[name]; ok {
		return g
	}
	return name
}

// applyConfigFile sets every key of the TOML file at path through the
// FlagSet, so the file is checked exactly like the command line. Keys that
// cli (the parsed command line) sets are skipped: flags override the file,
// and repeatable flags replace the file's list instead of appending to it.
func (p *flagParser) applyConfigFile(path string, cli *flagSet) error {
	var doc map[string]any
	if _, err := toml.DecodeFile(path, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	overridden := map[string]bool{}
	cli.visitChanged(func(d *flagDef) { overridden[overrideGroup(d.name)] = true })

	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the same error first on every run
	for _, key := range keys {
		d := p.fs.lookup(key)
		if d == nil {
			return fmt.Errorf("config file %s: unknown key %q: keys are long flag names without \"--\", see uvfsd --help", path, key)
		}
		if commandLineOnly[key] {
			return fmt.Errorf("config file %s: key %q only works on the command line; remove it from the file", path, key)
		}
		if overridden[overrideGroup(key)] {
			continue
		}
		values, err := tomlFlagValues(d.value.Type(), doc[key])
		if err != nil {
			return fmt.Errorf("config file %s: key %q: %w", path, key, err)
		}
		for _, v := range values {
			if err := d.value.Set(v); err != nil {
				return fmt.Errorf("config file %s: %s = %q: %w", path, key, v, err)
			}
		}
	}
	return nil
}

// tomlFlagValues turns a TOML value into the strings the Set of a flag of type typ (flagValue's
// Type) takes, insisting on the TOML type that matches it.
func tomlFlagValues(typ string, v any) ([]string, error) {
	switch typ {
	case "bool":
		if b, ok := v.(bool); ok {
			return []string{strconv.FormatBool(b)}, nil
		}
		return nil, fmt.Errorf("want true or false, not %s", tomlTypeName(v))
	case "int":
		if n, ok := v.(int64); ok {
			return []string{strconv.FormatInt(n, 10)}, nil
		}
		return nil, fmt.Errorf("want an integer, not %s", tomlTypeName(v))
	case "stringArray":
		if s, ok := v.(string); ok {
			return []string{s}, nil
		}
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("want an array of strings, not %s", tomlTypeName(v))
		}
		out := make([]string, 0, len(list))
		for _, e := range list {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("want an array of strings, but it holds %s", tomlTypeName(e))
			}
			out = append(out, s)
		}
		return out, nil
	default:
		if s, ok := v.(string); ok {
			return []string{s}, nil
		}
		return nil, fmt.Errorf("want a string, not %s", tomlTypeName(v))
	}
}

func tomlTypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return "a date/time"
	}
}

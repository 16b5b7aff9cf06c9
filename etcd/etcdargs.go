package etcd

import (
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// etcdBoolFlags are etcd's boolean flags that matter here; Go's flag package
// never lets them consume the next argument.
var etcdBoolFlags = map[string]bool{
	"client-cert-auth": true, "peer-client-cert-auth": true, "auto-tls": true, "peer-auto-tls": true,
	"enable-pprof": true, "strict-reconfig-check": true, "force-new-cluster": true, "debug": true,
	"enable-grpc-gateway": true, "experimental-initial-corrupt-check": true, "feature-gates": false,
	"self-signed-cert-validity": false, "logger": false,
}

// ParseEtcdArgs parses an etcd command line.
func ParseEtcdArgs(argv []string) Args { return ParseArgs(argv, etcdBoolFlags) }

// EtcdEffectiveArgs is the configuration etcd really runs with: when
// --config-file is given etcd reads only that file; otherwise each flag not
// on the command line may come from its ETCD_* environment variable.
func EtcdEffectiveArgs(cmd Args, env map[string]string, configFile []byte) (Args, error) {
	if cmd.Has("config-file") {
		if configFile == nil {
			return cmd, fmt.Errorf("--config-file %s could not be read", cmd.String("config-file"))
		}
		return ConfigFileArgs(configFile)
	}
	out := Args{Program: cmd.Program, Values: map[string][]string{}, Order: append([]string{}, cmd.Order...)}
	for k, v := range cmd.Values {
		out.Values[k] = v
	}
	for k, v := range env {
		name, ok := strings.CutPrefix(k, "ETCD_")
		if !ok {
			continue
		}
		flag := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if out.Has(flag) {
			continue
		}
		out.Values[flag] = []string{v}
		out.Order = append(out.Order, flag)
	}
	return out, nil
}

// ConfigFileArgs converts an etcd --config-file (YAML) to the equivalent
// flags, for the settings the audit reads.
func ConfigFileArgs(b []byte) (Args, error) {
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return Args{}, fmt.Errorf("parse etcd config file: %w", err)
	}
	out := Args{Values: map[string][]string{}}
	set := func(flag string, v any) {
		if v == nil {
			return
		}
		s := fmt.Sprint(v)
		if l, ok := v.([]any); ok {
			parts := make([]string, len(l))
			for i, p := range l {
				parts[i] = fmt.Sprint(p)
			}
			s = strings.Join(parts, ",")
		}
		if !out.Has(flag) {
			out.Order = append(out.Order, flag)
		}
		out.Values[flag] = []string{s}
	}
	for k, v := range m {
		switch k {
		case "client-transport-security", "peer-transport-security":
			sec, _ := v.(map[string]any)
			prefix := ""
			if k == "peer-transport-security" {
				prefix = "peer-"
			}
			for sk, sv := range sec {
				set(prefix+sk, sv)
			}
		default:
			set(k, v)
		}
	}
	return out, nil
}

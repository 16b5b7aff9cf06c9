package playbooks

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"text/template"

	"github.com/kbootstrap/kbootstrap/node"
)

// funcs are the functions templates may call besides text/template's own.
var funcs = template.FuncMap{
	// quote quotes a value for a POSIX shell.
	"quote": func(v any) string { return node.ShellQuote(fmt.Sprint(v)) },
	"join": func(sep string, v any) string {
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Slice {
			return fmt.Sprint(v)
		}
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(rv.Index(i).Interface())
		}
		return strings.Join(parts, sep)
	},
	// default returns def when v is missing or empty.
	"default": func(def, v any) any {
		if v == nil {
			return def
		}
		rv := reflect.ValueOf(v)
		if rv.IsZero() || (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Map) && rv.Len() == 0 {
			return def
		}
		return v
	},
	"contains":  func(sub, s string) bool { return strings.Contains(s, sub) },
	"hasPrefix": func(prefix, s string) bool { return strings.HasPrefix(s, prefix) },
	"hasSuffix": func(suffix, s string) bool { return strings.HasSuffix(s, suffix) },
	"trim":      strings.TrimSpace,
	"lower":     strings.ToLower,
	"upper":     strings.ToUpper,
	"split":     func(sep, s string) []string { return strings.Split(s, sep) },
	"replace":   func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
	"indent": func(n int, s string) string {
		pad := strings.Repeat(" ", n)
		return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
	},
	"toJSON": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// newTemplate returns an empty template with the playbook functions; a
// missing map key is an error (a typo in .vars.x fails the task instead of
// rendering "<no value>").
func newTemplate(name string) *template.Template {
	return template.New(name).Funcs(funcs).Option("missingkey=error")
}

// render expands s as a template over data; a string without "{{" is
// returned as it is.
func render(name, s string, data map[string]any) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	t, err := newTemplate(name).Parse(s)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// truthy interprets a rendered condition.
func truthy(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "false", "0", "no", "off", "<no value>", "<nil>", "[]", "map[]":
		return false
	}
	return true
}

// renderStruct renders every string (also in slices, maps and nested
// structs) of the struct v points to, in place.
func renderStruct(v reflect.Value, r func(string) (string, error)) error {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		if v.CanSet() && v.Elem().Kind() == reflect.Struct {
			// A copy, so that the parsed task keeps its templates.
			c := reflect.New(v.Elem().Type())
			c.Elem().Set(v.Elem())
			v.Set(c)
		}
		return renderStruct(v.Elem(), r)
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			if f := t.Field(i); !f.IsExported() && !f.Anonymous {
				continue
			}
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if err := renderStruct(v.Field(i), r); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	case reflect.String:
		s, err := r(v.String())
		if err != nil {
			return err
		}
		v.SetString(s)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return nil
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := 0; i < v.Len(); i++ {
			out.Index(i).Set(v.Index(i))
			if err := renderStruct(out.Index(i), r); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		v.Set(out)
	case reflect.Map:
		if v.IsNil() || v.Type().Elem().Kind() != reflect.String {
			return nil
		}
		out := reflect.MakeMapWithSize(v.Type(), v.Len())
		iter := v.MapRange()
		for iter.Next() {
			s, err := r(iter.Value().String())
			if err != nil {
				return fmt.Errorf("%v: %w", iter.Key(), err)
			}
			out.SetMapIndex(iter.Key(), reflect.ValueOf(s).Convert(v.Type().Elem()))
		}
		v.Set(out)
	}
	return nil
}

// validation is when a module's arguments are validated: as parsed, a value
// holding a template action ("{{") is judged after rendering; once rendered,
// every value is judged as it is, "{{" or not (a var's value may hold one).
type validation bool

const (
	asParsed   validation = false
	asRendered validation = true
)

// templated reports whether s is still to be rendered.
func (v validation) templated(s string) bool { return v == asParsed && strings.Contains(s, "{{") }

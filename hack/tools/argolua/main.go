// Command argolua runs rolecall's Argo CD health checks and resource actions the way Argo CD runs
// them: on gopher-lua (Lua 5.1) with only the base, package and table libraries and a safe `os`
// (time and date), a one-second limit, and the object as the global `obj`. Lua 5.4 would accept
// scripts that Argo CD rejects (and the reverse), so these scripts are never tested on another Lua.
//
//	argolua test DIR...        run DIR/health_test.yaml and DIR/actions/action_test.yaml (Argo CD's
//	                           layout, DIR = <group>/<Kind>); exit 1 on any mismatch
//	argolua health DIR         print {"status","message"} for the object on stdin (JSON or YAML)
//	argolua discover DIR       print the actions discovery.lua offers for the object on stdin
//	argolua action DIR NAME    print the object that action NAME returns for the object on stdin
//
// ARGOLUA_NOW (RFC 3339) fixes the clock that os.time and os.date read, so action outputs that carry
// a request time can be compared with their expected files.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "test":
		err = runTests(os.Args[2:])
	case "health":
		err = printResult(func(obj map[string]interface{}) (interface{}, error) {
			return health(os.Args[2], obj)
		})
	case "discover":
		err = printResult(func(obj map[string]interface{}) (interface{}, error) {
			return discover(os.Args[2], obj)
		})
	case "action":
		if len(os.Args) != 4 {
			usage()
		}
		err = printResult(func(obj map[string]interface{}) (interface{}, error) {
			return action(os.Args[2], os.Args[3], obj)
		})
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "argolua:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: argolua test DIR... | health DIR | discover DIR | action DIR NAME (object on stdin)")
	os.Exit(2)
}

func printResult(run func(map[string]interface{}) (interface{}, error)) error {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	obj, err := decodeObject(raw)
	if err != nil {
		return err
	}
	result, err := run(obj)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(result)
}

// --- what the scripts compute ----------------------------------------------------------------------

type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

var validHealth = map[string]bool{"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true,
	"Missing": true, "Unknown": true}

func health(dir string, obj map[string]interface{}) (*healthStatus, error) {
	out, err := runScript(filepath.Join(dir, "health.lua"), obj)
	if err != nil {
		return nil, err
	}
	var hs healthStatus
	if err := json.Unmarshal(out, &hs); err != nil {
		return nil, fmt.Errorf("health.lua returned %s: %v", out, err)
	}
	if !validHealth[hs.Status] {
		return nil, fmt.Errorf("health.lua returned status %q, which Argo CD turns into Unknown", hs.Status)
	}
	return &hs, nil
}

type discovered struct {
	Name     string `json:"name"`
	Disabled bool   `json:"disabled"`
}

func discover(dir string, obj map[string]interface{}) ([]discovered, error) {
	out, err := runScript(filepath.Join(dir, "actions", "discovery.lua"), obj)
	if err != nil {
		return nil, err
	}
	found := []discovered{}
	if string(out) == "[]" {
		return found, nil
	}
	var byName map[string]interface{}
	if err := json.Unmarshal(out, &byName); err != nil {
		return nil, fmt.Errorf("discovery.lua returned %s: %v", out, err)
	}
	for name, value := range byName {
		// An empty table ({} in Lua) comes out as [], an action without properties (as in Argo CD).
		props, _ := value.(map[string]interface{})
		disabled, _ := props["disabled"].(bool)
		found = append(found, discovered{name, disabled})
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Name < found[j].Name })
	return found, nil
}

func action(dir, name string, obj map[string]interface{}) (map[string]interface{}, error) {
	out, err := runScript(filepath.Join(dir, "actions", name, "action.lua"), obj)
	if err != nil {
		return nil, err
	}
	var result map[string]interface{}
	if err := json.Unmarshal(out, &result); err != nil {
		return nil, fmt.Errorf("action %s returned %s (an object was expected): %v", name, out, err)
	}
	return result, nil
}

// --- the Lua state, as Argo CD sets it up ------------------------------------------------------------

func runScript(path string, obj map[string]interface{}) ([]byte, error) {
	script, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	// In Argo CD's order (package first: opening it resets package.loaded), then `os` preloaded too, so
	// `local os = require("os")` works as it does there.
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs}} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	L.PreloadModule(lua.OsLibName, func(L *lua.LState) int {
		L.Push(L.SetFuncs(L.NewTable(), safeOs))
		return 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(string(script)); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	ret := L.Get(-1)
	if ret.Type() != lua.LTTable {
		return nil, fmt.Errorf("%s returned a %s, not a table", path, ret.Type())
	}
	value, err := fromLua(ret)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return json.Marshal(value)
}

// The only os functions Argo CD offers: time and date (no exit, no files, no environment).
var safeOs = map[string]lua.LGFunction{"time": osTime, "date": osDate}

func openSafeOs(L *lua.LState) int {
	L.Push(L.RegisterModule(lua.OsLibName, safeOs))
	return 1
}

func now() time.Time {
	if fixed := os.Getenv("ARGOLUA_NOW"); fixed != "" {
		t, err := time.Parse(time.RFC3339, fixed)
		if err != nil {
			panic("ARGOLUA_NOW is not an RFC 3339 time: " + fixed)
		}
		return t
	}
	return time.Now()
}

// osTime: now, or the time a table {year, month, day, hour=12, min=0, sec=0} names (local time, as C's).
func osTime(L *lua.LState) int {
	if L.GetTop() == 0 {
		L.Push(lua.LNumber(now().Unix()))
		return 1
	}
	t := L.CheckTable(1)
	field := func(key string, def int) int {
		if n, ok := t.RawGetString(key).(lua.LNumber); ok {
			return int(n)
		}
		return def
	}
	at := time.Date(field("year", 1970), time.Month(field("month", 1)), field("day", 1), field("hour", 12),
		field("min", 0), field("sec", 0), 0, time.Local)
	L.Push(lua.LNumber(at.Unix()))
	return 1
}

// osDate formats with the strftime directives %Y %m %d %H %M %S %c (a subset of Argo CD's, which rolecall's
// scripts stay within); "!" asks for UTC, like C's os.date.
func osDate(L *lua.LState) int {
	format := L.OptString(1, "%c")
	t := now().Local()
	if strings.HasPrefix(format, "!") {
		t, format = t.UTC(), format[1:]
	}
	layouts := map[byte]string{'Y': "2006", 'm': "01", 'd': "02", 'H': "15", 'M': "04", 'S': "05", 'c': time.ANSIC}
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] == '%' && i+1 < len(format) {
			if layout, ok := layouts[format[i+1]]; ok {
				b.WriteString(t.Format(layout))
				i++
				continue
			}
		}
		b.WriteByte(format[i])
	}
	L.Push(lua.LString(b.String()))
	return 1
}

func toLua(L *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		t := L.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(L, item))
		}
		return t
	case map[string]interface{}:
		t := L.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetString(key, toLua(L, item))
		}
		return t
	}
	return lua.LNil
}

// fromLua turns a returned table into JSON values: a table whose keys are exactly 1..n is an array
// (an empty table too, as in Argo CD), anything else an object with string keys.
func fromLua(value lua.LValue) (interface{}, error) {
	switch v := value.(type) {
	case lua.LBool:
		return bool(v), nil
	case lua.LNumber:
		return float64(v), nil
	case lua.LString:
		return string(v), nil
	case *lua.LNilType:
		return nil, nil
	case *lua.LTable:
		if n := v.MaxN(); n > 0 || countKeys(v) == 0 {
			if n == countKeys(v) {
				arr := make([]interface{}, 0, n)
				for i := 1; i <= n; i++ {
					item, err := fromLua(v.RawGetInt(i))
					if err != nil {
						return nil, err
					}
					arr = append(arr, item)
				}
				return arr, nil
			}
		}
		obj := map[string]interface{}{}
		var err error
		v.ForEach(func(key, item lua.LValue) {
			if err != nil {
				return
			}
			name, ok := key.(lua.LString)
			if !ok {
				err = fmt.Errorf("a table mixes array items and keys")
				return
			}
			obj[string(name)], err = fromLua(item)
		})
		return obj, err
	}
	return nil, fmt.Errorf("cannot turn a Lua %s into JSON", value.Type())
}

func countKeys(t *lua.LTable) int {
	n := 0
	t.ForEach(func(lua.LValue, lua.LValue) { n++ })
	return n
}

// --- Argo CD's test layout -----------------------------------------------------------------------

type healthTests struct {
	Tests []struct {
		HealthStatus healthStatus `json:"healthStatus"`
		InputPath    string       `json:"inputPath"`
	} `json:"tests"`
}

type actionTests struct {
	DiscoveryTests []struct {
		InputPath string       `json:"inputPath"`
		Result    []discovered `json:"result"`
	} `json:"discoveryTests"`
	ActionTests []struct {
		Action             string `json:"action"`
		InputPath          string `json:"inputPath"`
		ExpectedOutputPath string `json:"expectedOutputPath"`
	} `json:"actionTests"`
}

func runTests(dirs []string) error {
	failures, total := 0, 0
	check := func(what string, err error) {
		total++
		if err != nil {
			failures++
			fmt.Printf("FAIL %s: %v\n", what, err)
		} else {
			fmt.Printf("ok   %s\n", what)
		}
	}
	for _, dir := range dirs {
		var ht healthTests
		if err := readYAML(filepath.Join(dir, "health_test.yaml"), &ht); err != nil {
			return err
		}
		if len(ht.Tests) == 0 {
			return fmt.Errorf("%s/health_test.yaml has no tests", dir)
		}
		for _, tc := range ht.Tests {
			check(fmt.Sprintf("%s health %s", dir, tc.InputPath), func() error {
				obj, err := readObject(filepath.Join(dir, tc.InputPath))
				if err != nil {
					return err
				}
				got, err := health(dir, obj)
				if err != nil {
					return err
				}
				if *got != tc.HealthStatus {
					return fmt.Errorf("got %+v, want %+v", *got, tc.HealthStatus)
				}
				return nil
			}())
		}
		actionsFile := filepath.Join(dir, "actions", "action_test.yaml")
		if _, err := os.Stat(actionsFile); os.IsNotExist(err) {
			continue
		}
		var at actionTests
		if err := readYAML(actionsFile, &at); err != nil {
			return err
		}
		for _, tc := range at.DiscoveryTests {
			check(fmt.Sprintf("%s discovery %s", dir, tc.InputPath), func() error {
				obj, err := readObject(filepath.Join(dir, "actions", tc.InputPath))
				if err != nil {
					return err
				}
				got, err := discover(dir, obj)
				if err != nil {
					return err
				}
				want := append([]discovered{}, tc.Result...)
				sort.Slice(want, func(i, j int) bool { return want[i].Name < want[j].Name })
				if !reflect.DeepEqual(got, want) {
					return fmt.Errorf("got %+v, want %+v", got, want)
				}
				return nil
			}())
		}
		for _, tc := range at.ActionTests {
			check(fmt.Sprintf("%s action %s %s", dir, tc.Action, tc.InputPath), func() error {
				obj, err := readObject(filepath.Join(dir, "actions", tc.InputPath))
				if err != nil {
					return err
				}
				got, err := action(dir, tc.Action, obj)
				if err != nil {
					return err
				}
				want, err := readObject(filepath.Join(dir, "actions", tc.ExpectedOutputPath))
				if err != nil {
					return err
				}
				if !reflect.DeepEqual(normalise(got), normalise(want)) {
					gotYAML, _ := yaml.Marshal(got)
					return fmt.Errorf("the output differs from %s; got:\n%s", tc.ExpectedOutputPath, gotYAML)
				}
				return nil
			}())
		}
	}
	fmt.Printf("%d checks, %d failed\n", total, failures)
	if failures > 0 {
		return fmt.Errorf("%d of %d checks failed", failures, total)
	}
	return nil
}

func readYAML(path string, into interface{}) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(raw, into); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

func readObject(path string) (map[string]interface{}, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	obj, err := decodeObject(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return obj, nil
}

func decodeObject(raw []byte) (map[string]interface{}, error) {
	var obj map[string]interface{}
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, fmt.Errorf("no object")
	}
	return obj, nil
}

// normalise round-trips through JSON so that numbers compare the same however they were decoded.
func normalise(obj map[string]interface{}) interface{} {
	raw, _ := json.Marshal(obj)
	var out interface{}
	_ = json.Unmarshal(raw, &out)
	return out
}

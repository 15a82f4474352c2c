// argocd-lua runs an Argo CD health script the way Argo CD's application controller does (util/lua in Argo CD):
// gopher-lua with only the package, base and table libraries and a reduced os library (time and date), the object
// as the global `obj` (JSON null dropped), a one-second context deadline, and the returned table checked for a valid
// health status. Test tool only, never shipped.
//
//	argocd-lua <health.lua> <object.json>   → prints {"status":...,"message":...}
//	argocd-lua --version
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

const version = "argocd-lua v1 (gopher-lua v1.1.1)"

var validStatuses = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

// toLua converts a decoded JSON value; JSON null becomes nil, so the key is absent from its table as in Argo CD.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	}
	return lua.LNil
}

// safeOs keeps only the functions of the os library Argo CD exposes to health scripts.
func safeOs(l *lua.LState) int {
	full := l.GetGlobal(lua.OsLibName).(*lua.LTable)
	safe := l.NewTable()
	safe.RawSetString("time", full.RawGetString("time"))
	safe.RawSetString("date", full.RawGetString("date"))
	l.Push(safe)
	return 1
}

func run(scriptPath, objectPath string) (map[string]string, error) {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(objectPath)
	if err != nil {
		return nil, err
	}
	var object map[string]any
	if err := json.Unmarshal(raw, &object); err != nil {
		return nil, fmt.Errorf("object: %w", err)
	}

	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, lua.OpenOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	if err := l.CallByParam(lua.P{Fn: l.NewFunction(safeOs), NRet: 1, Protect: true}); err != nil {
		return nil, err
	}
	reduced := l.Get(-1)
	l.Pop(1)
	l.SetGlobal(lua.OsLibName, reduced)
	l.PreloadModule(lua.OsLibName, func(l *lua.LState) int { l.Push(reduced); return 1 })

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, object))
	if err := l.DoString(string(script)); err != nil {
		return nil, err
	}
	returned, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", l.Get(-1).Type())
	}
	result := map[string]string{}
	for _, key := range []string{"status", "message"} {
		if value, ok := returned.RawGetString(key).(lua.LString); ok {
			result[key] = string(value)
		}
	}
	if !validStatuses[result["status"]] {
		return map[string]string{"status": "Unknown", "message": "Lua returned an invalid health status"}, nil
	}
	return result, nil
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println(version)
		return
	}
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua <health.lua> <object.json>")
		os.Exit(2)
	}
	result, err := run(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, _ := json.Marshal(result)
	fmt.Println(string(out))
}

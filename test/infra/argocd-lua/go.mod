// Builds argocd-lua (main.go: our harness around gopher-lua, MIT, the Lua VM Argo CD runs health scripts in), to
// test deploy/argocd/health.lua. Never shipped.
module liveupdate-operator/test/infra/argocd-lua

go 1.24.0

require github.com/yuin/gopher-lua v1.1.1

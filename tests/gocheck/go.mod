// Offline build: golang.org/x/mod comes from Debian's
// golang-golang-x-mod-dev (no module proxy, no go.sum needed for a
// directory replacement). Build with GOPROXY=off GOFLAGS=-mod=mod.
module revledger.test/gocheck

go 1.17

require golang.org/x/mod v0.0.0-00010101000000-000000000000

replace golang.org/x/mod => /usr/share/gocode/src/golang.org/x/mod

// Command surface measures the repository's size and the public surface of one
// package, so that structural clean-ups can report before/after figures that
// anyone can reproduce:
//
//	go run ./tools/surface                 # lines by area + pkg/iapsetup surface
//	go run ./tools/surface -pkg ./pkg/outcome
//
// Lines are physical lines of .go files (as `wc -l` counts them), split into
// non-test and _test.go files and grouped by area: product (everything that
// ships or is operated: pkg/, functions/, internal/, cmd/, eventarc/,
// examples/), emulator (emulator/), test and benchmark harness (test/) and
// tools (tools/). The surface counts the package's exported top-level
// identifiers (types, functions, methods of exported types, consts, vars) and
// the exported fields of its struct types (named fields of any struct type
// declared in the package, including nested struct literals).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	root := flag.String("root", ".", "repository root")
	pkg := flag.String("pkg", "./pkg/iapsetup", "package directory whose exported surface is counted")
	verbose := flag.Bool("v", false, "list every exported identifier and field")
	flag.Parse()
	if err := lines(*root); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := surface(filepath.Join(*root, *pkg), *verbose); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func area(rel string) string {
	top, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
	switch top {
	case "emulator":
		return "emulator"
	case "test":
		return "test-harness"
	case "tools":
		return "tools"
	default:
		return "product"
	}
}

func lines(root string) error {
	type count struct{ src, test int }
	byArea := map[string]*count{}
	byDir := map[string]*count{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n := bytes.Count(b, []byte{'\n'})
		rel, _ := filepath.Rel(root, path)
		a := area(rel)
		dir := filepath.ToSlash(filepath.Dir(rel))
		if parts := strings.Split(dir, "/"); len(parts) > 2 {
			dir = strings.Join(parts[:2], "/")
		}
		for _, m := range []struct {
			m map[string]*count
			k string
		}{{byArea, a}, {byDir, dir}} {
			c := m.m[m.k]
			if c == nil {
				c = &count{}
				m.m[m.k] = c
			}
			if strings.HasSuffix(path, "_test.go") {
				c.test += n
			} else {
				c.src += n
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Println("Go lines by area (non-test / _test.go):")
	total := count{}
	for _, a := range []string{"product", "emulator", "test-harness", "tools"} {
		c := byArea[a]
		if c == nil {
			c = &count{}
		}
		total.src += c.src
		total.test += c.test
		fmt.Printf("  %-14s %6d / %6d\n", a, c.src, c.test)
	}
	fmt.Printf("  %-14s %6d / %6d\n", "total", total.src, total.test)
	dirs := make([]string, 0, len(byDir))
	for d := range byDir {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	fmt.Println("Go lines by directory (non-test / _test.go):")
	for _, d := range dirs {
		fmt.Printf("  %-28s %6d / %6d\n", d, byDir[d].src, byDir[d].test)
	}
	return nil
}

func surface(dir string, verbose bool) error {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var idents, fields []string
	kinds := map[string]int{}
	add := func(kind, name string) {
		kinds[kind]++
		idents = append(idents, kind+" "+name)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				if d.Recv == nil {
					add("func", d.Name.Name)
					continue
				}
				// Methods of unexported types are not part of the surface.
				if recv := recvName(d.Recv.List[0].Type); ast.IsExported(recv) {
					add("method", recv+"."+d.Name.Name)
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch s := spec.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							add("type", s.Name.Name)
						}
						ast.Inspect(s.Type, func(n ast.Node) bool {
							st, ok := n.(*ast.StructType)
							if !ok {
								return true
							}
							for _, fl := range st.Fields.List {
								for _, id := range fl.Names {
									if id.IsExported() {
										fields = append(fields, s.Name.Name+"."+id.Name)
									}
								}
							}
							return true
						})
					case *ast.ValueSpec:
						kind := "var"
						if d.Tok == token.CONST {
							kind = "const"
						}
						for _, id := range s.Names {
							if id.IsExported() {
								add(kind, id.Name)
							}
						}
					}
				}
			}
		}
	}
	fmt.Printf("Exported surface of %s: %d identifiers (types %d, funcs %d, methods %d, consts %d, vars %d), %d exported fields\n",
		dir, len(idents), kinds["type"], kinds["func"], kinds["method"], kinds["const"], kinds["var"], len(fields))
	if verbose {
		sort.Strings(idents)
		sort.Strings(fields)
		for _, s := range idents {
			fmt.Println("  " + s)
		}
		for _, s := range fields {
			fmt.Println("  field " + s)
		}
	}
	return nil
}

func recvName(t ast.Expr) string {
	switch x := t.(type) {
	case *ast.StarExpr:
		return recvName(x.X)
	case *ast.IndexExpr:
		return recvName(x.X)
	case *ast.IndexListExpr:
		return recvName(x.X)
	case *ast.Ident:
		return x.Name
	}
	return "?"
}

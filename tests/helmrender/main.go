// Command helmrender renders a Helm chart with Helm's own engine (helm.sh/helm/v3), offline,
// like `helm template`: chart loading, values merging with values.schema.json validation,
// template rendering and CRDs from crds/. The tests use it so that the chart is rendered by
// the real Helm, not by a substitute.
//
// Usage:
//
//	helmrender --chart DIR [--release NAME] [--namespace NS] [--values FILE]... [--set-string k=v]... [--include-crds]
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/strvals"
	"sigs.k8s.io/yaml"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	chartDir := flag.String("chart", "", "chart directory (required)")
	release := flag.String("release", "bucketwire", "release name")
	namespace := flag.String("namespace", "bucketwire-system", "release namespace")
	includeCRDs := flag.Bool("include-crds", false, "print the chart's CRDs first")
	var valueFiles, setStrings multi
	flag.Var(&valueFiles, "values", "values file (repeatable)")
	flag.Var(&setStrings, "set-string", "key=value (repeatable)")
	flag.Parse()
	if err := run(*chartDir, *release, *namespace, *includeCRDs, valueFiles, setStrings); err != nil {
		fmt.Fprintln(os.Stderr, "helmrender:", err)
		os.Exit(1)
	}
}

func run(chartDir, release, namespace string, includeCRDs bool, valueFiles, setStrings []string) error {
	if chartDir == "" {
		return fmt.Errorf("--chart is required")
	}
	chart, err := loader.Load(chartDir)
	if err != nil {
		return err
	}
	user := map[string]interface{}{}
	for _, f := range valueFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		current := map[string]interface{}{}
		if err := yaml.Unmarshal(data, &current); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		user = chartutil.CoalesceTables(current, user)
	}
	for _, s := range setStrings {
		if err := strvals.ParseIntoString(s, user); err != nil {
			return err
		}
	}
	options := chartutil.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}
	values, err := chartutil.ToRenderValues(chart, user, options, chartutil.DefaultCapabilities)
	if err != nil {
		return err // includes values.schema.json violations
	}
	rendered, err := engine.Render(chart, values)
	if err != nil {
		return err
	}
	if includeCRDs {
		for _, crd := range chart.CRDObjects() {
			fmt.Printf("---\n# Source: %s\n%s\n", crd.Filename, strings.TrimSpace(string(crd.File.Data)))
		}
	}
	names := make([]string, 0, len(rendered))
	for name := range rendered {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		body := strings.TrimSpace(rendered[name])
		if body == "" || strings.HasSuffix(name, "NOTES.txt") || strings.HasPrefix(strings.TrimPrefix(body, "---"), "\n#") && strings.Count(body, "\n") < 2 {
			continue
		}
		fmt.Printf("---\n# Source: %s\n%s\n", name, strings.TrimPrefix(body, "---\n"))
	}
	return nil
}

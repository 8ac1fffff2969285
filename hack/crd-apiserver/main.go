// botrt-crd-apiserver: the upstream k8s.io/apiextensions-apiserver (Debian's
// golang-k8s-apiextensions-apiserver-dev, 0.36) run standalone, without a core kube-apiserver, so BotRT's CRDs and
// the controller's custom-resource path can be tested against a current Kubernetes API surface (hack/crd-apiserver.sh
// builds and runs it; docs/testing.md). Adapted from the verified recipe in the team's crd-apiserver-1.36 notes.
//   - without --kubeconfig: no core API shared informers and no admission chain (namespaces are not checked);
//     with --kubeconfig (e.g. a 1.20 kube-apiserver): upstream behaviour (NamespaceLifecycle, webhooks)
//   - priority&fairness off (it needs a core API with flowcontrol/v1)
//   - delegated authn/authz kubeconfigs optional: client certs (--client-ca-file) work;
//     group system:masters is always authorized; others are denied unless --insecure-allow-all
//   - standalone: Services lister backed by an empty fake clientset (conversion webhooks: use url:, not service:)
//   - OpenAPI v2+v3 published for CRDs (the upstream standalone binary publishes neither for CRDs), so kubectl's
//     client-side validation and `kubectl explain` work
//   - root discovery /apis re-enabled (upstream disables it because kube-aggregator normally serves it);
//     CRD groups appear in aggregated (v2) discovery and, via addLegacyRootDiscovery, in legacy v1 discovery.
package main

import (
	"os"
	"sort"
	"sync"

	"github.com/spf13/cobra"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/admission"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/cli"
)

var allowAll bool

func main() {
	ctx := genericapiserver.SetupSignalContext()
	o := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	o.RecommendedOptions.Authentication.RemoteKubeConfigFileOptional = true
	o.RecommendedOptions.Authentication.SkipInClusterLookup = true
	o.RecommendedOptions.Authorization.RemoteKubeConfigFileOptional = true
	o.RecommendedOptions.Features.EnablePriorityAndFairness = false
	// apiextensions' Config() needs a Services lister (conversion-webhook service resolution):
	// give it informers over an empty in-memory fake clientset instead of a real core API server.
	o.RecommendedOptions.ExtraAdmissionInitializers = func(c *genericapiserver.RecommendedConfig) ([]admission.PluginInitializer, error) {
		if c.SharedInformerFactory == nil {
			c.SharedInformerFactory = informers.NewSharedInformerFactory(fake.NewSimpleClientset(), 0)
		}
		return nil, nil
	}

	cmd := &cobra.Command{
		Use:   "botrt-crd-apiserver",
		Short: "Standalone apiextensions-apiserver (1.36) for BotRT CRD and controller tests",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.ServerRunOptions.ComponentGlobalsRegistry.Set()
		},
		RunE: func(c *cobra.Command, args []string) error {
			if o.RecommendedOptions.CoreAPI.CoreAPIKubeconfigPath == "" {
				// standalone: no core API server, so no shared informers over it and no admission chain
				o.RecommendedOptions.CoreAPI = nil
				o.RecommendedOptions.Admission = nil
			}
			if allowAll {
				o.RecommendedOptions.Authorization.WithAlwaysAllowGroups("system:unauthenticated", "system:authenticated")
			}
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			config, err := o.Config()
			if err != nil {
				return err
			}
			// Upstream only sets OpenAPI v3 config; the CRD OpenAPI (v2 and v3) controllers only run when the
			// v2 static spec exists, so enable v2 too (kubectl client-side validation / explain need it).
			config.GenericConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(
				openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions),
				openapinamer.NewDefinitionNamer(apiserver.Scheme, scheme.Scheme))
			completed := config.Complete()
			completed.GenericConfig.EnableDiscovery = true
			server, err := completed.New(genericapiserver.NewEmptyDelegate())
			if err != nil {
				return err
			}
			addLegacyRootDiscovery(server)
			return server.GenericAPIServer.PrepareRun().RunWithContext(c.Context())
		},
	}
	cmd.SetContext(ctx)
	o.AddFlags(cmd.Flags())
	cmd.Flags().BoolVar(&allowAll, "insecure-allow-all", false,
		"TEST ONLY: authorize every request, including anonymous ones and ones with unverifiable bearer tokens (treated as anonymous).")
	os.Exit(cli.Run(cmd))
}

// addLegacyRootDiscovery lists established CRD groups in the legacy (v1 APIGroupList) /apis document,
// which upstream leaves to kube-aggregator's CRD registration controller. Clients that do not use
// aggregated discovery (old client-go, hand-written clients) need it.
func addLegacyRootDiscovery(s *apiserver.CustomResourceDefinitions) {
	gm := s.GenericAPIServer.DiscoveryGroupManager
	inf := s.Informers.Apiextensions().V1().CustomResourceDefinitions()
	var mu sync.Mutex
	added := map[string]bool{}
	resync := func() {
		mu.Lock()
		defer mu.Unlock()
		crds, err := inf.Lister().List(labels.Everything())
		if err != nil {
			return
		}
		groups := map[string]map[string]bool{}
		for _, crd := range crds {
			if !apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Established) {
				continue
			}
			for _, v := range crd.Spec.Versions {
				if v.Served {
					if groups[crd.Spec.Group] == nil {
						groups[crd.Spec.Group] = map[string]bool{}
					}
					groups[crd.Spec.Group][v.Name] = true
				}
			}
		}
		for g := range added {
			if groups[g] == nil {
				gm.RemoveGroup(g)
				delete(added, g)
			}
		}
		for g, vs := range groups {
			names := make([]string, 0, len(vs))
			for v := range vs {
				names = append(names, v)
			}
			sort.Slice(names, func(i, j int) bool { return version.CompareKubeAwareVersionStrings(names[i], names[j]) > 0 })
			ag := metav1.APIGroup{Name: g}
			for _, v := range names {
				ag.Versions = append(ag.Versions, metav1.GroupVersionForDiscovery{GroupVersion: g + "/" + v, Version: v})
			}
			ag.PreferredVersion = ag.Versions[0]
			gm.AddGroup(ag)
			added[g] = true
		}
	}
	inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(interface{}) { resync() },
		UpdateFunc: func(interface{}, interface{}) { resync() },
		DeleteFunc: func(interface{}) { resync() },
	})
}

package webhook

import (
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/ptr"

	"github.com/vk8s-io/vk8s/overrides"
)

func TestPlacementAnnotation(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Placement
		wantErr bool
	}{
		{in: "", want: Placement{}},
		{in: "site2=3,site1=0", want: Placement{Sites: []string{"site2", "site1"}, Counts: map[string]int32{"site2": 3, "site1": 0}}},
		{in: "a, b", want: Placement{Sites: []string{"a", "b"}}},
		{in: "a=1,a=2", wantErr: true},
		{in: "a=1,b", wantErr: true},
		{in: "a=x", wantErr: true},
		{in: "a=-1", wantErr: true},
		{in: "a,,b", wantErr: true},
	} {
		got, err := ParsePlacement(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && !apiequality.Semantic.DeepEqual(got, tc.want)) {
			t.Errorf("ParsePlacement(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err == nil && tc.in != "a, b" && got.String() != tc.in {
			t.Errorf("%q formats back as %q", tc.in, got.String())
		}
	}
}

func TestOrdinalBlocks(t *testing.T) {
	plan, _ := overrides.PlanReplicas([]string{"site1", "site2", "site3", "site4"}, 2, map[string]int32{"site3": 0, "site4": 1})
	// site2 was first, site1 second; site3 and site4 are new and go last, sorted.
	p := newPlacement(plan, []string{"site2", "gone", "site1"})
	if got := p.String(); got != "site2=2,site1=2,site3=0,site4=1" {
		t.Fatalf("placement %s", got)
	}
	var got []string
	for i := range 6 {
		s, ok := p.SiteOfOrdinal(i)
		if !ok {
			s = "-"
		}
		got = append(got, s)
	}
	if want := []string{"site2", "site2", "site1", "site1", "site4", "-"}; !slices.Equal(got, want) {
		t.Errorf("ordinals 0..5 on %v, want %v", got, want)
	}
	if _, ok := p.SiteOfOrdinal(-1); ok {
		t.Error("ordinal -1 has a site")
	}
}

func TestChoose(t *testing.T) {
	p := Placement{Sites: []string{"a", "b", "c"}, Counts: map[string]int32{"a": 3, "b": 1, "c": 3}}
	for _, tc := range []struct {
		current map[string]int
		deficit string
		fewest  string
	}{
		{map[string]int{}, "a", "a"},
		{map[string]int{"a": 1}, "c", "b"},
		{map[string]int{"a": 2, "c": 1}, "c", "b"},
		{map[string]int{"a": 3, "b": 1, "c": 3}, "b", "b"},
		{map[string]int{"a": 4, "b": 1, "c": 3}, "b", "b"},
		{map[string]int{"a": 3, "b": 2, "c": 3}, "a", "b"},
	} {
		if got := chooseByDeficit(p, tc.current); got != tc.deficit {
			t.Errorf("deficit with %v: %s, want %s", tc.current, got, tc.deficit)
		}
		if got := chooseFewest(p.Sites, tc.current); got != tc.fewest {
			t.Errorf("fewest with %v: %s, want %s", tc.current, got, tc.fewest)
		}
	}
}

func TestReservations(t *testing.T) {
	clock := &testClock{t: time.Unix(1000, 0)}
	r := newReservations(10*time.Second, clock.now)
	var visible []visiblePod
	list := func() ([]visiblePod, error) { return slices.Clone(visible), nil }
	var seen map[string]int
	place := func(site string, slot int, name string) {
		t.Helper()
		if _, _, err := r.place("k", list, func(counts map[string]int, used map[string]map[int]bool) (string, int, string, error) {
			seen = maps.Clone(counts)
			if slot == 0 && used[site] != nil {
				slot = freeSlot(used[site])
			}
			return site, slot, name, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	place("a", 1, "")
	place("a", 2, "")
	place("b", 0, "solo")
	if want := map[string]int{"a": 2}; !maps.Equal(seen, want) {
		t.Errorf("counts %v, want %v", seen, want)
	}
	// The first pod shows up in the cache: it is counted once.
	visible = []visiblePod{{site: "a", slot: 1}, {site: "b", name: "solo"}}
	place("c", 1, "")
	if want := map[string]int{"a": 2, "b": 1}; !maps.Equal(seen, want) {
		t.Errorf("counts with the cache %v, want %v", seen, want)
	}
	if n := r.count(); n != 2 {
		t.Errorf("%d live reservations, want 2 (a/2 and c/1)", n)
	}
	// Reservations expire; the keys that hold none are forgotten.
	clock.add(11 * time.Second)
	visible = nil
	place("x", 1, "")
	if want := map[string]int{}; !maps.Equal(seen, want) {
		t.Errorf("counts after expiry %v, want none", seen)
	}
	if _, _, err := r.place("k", list, func(map[string]int, map[string]map[int]bool) (string, int, string, error) {
		return "", 0, "", errors.New("refused")
	}); err == nil {
		t.Error("choose's error was lost")
	}
	clock.add(11 * time.Second)
	_, _, _ = r.place("other", list, func(map[string]int, map[string]map[int]bool) (string, int, string, error) { return "a", 1, "", nil })
	if _, ok := r.keys["k"]; ok {
		t.Error("a key without live reservations was kept")
	}
}

func TestCarryOver(t *testing.T) {
	token := corev1.Volume{Name: "kube-api-access-1", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}}}
	tokenMount := corev1.VolumeMount{Name: token.Name, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}
	notReady := corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}
	userTol := corev1.Toleration{Key: "gpu", Operator: corev1.TolerationOpExists}
	template := corev1.PodSpec{
		Containers:  []corev1.Container{{Name: "app", Image: "v1"}},
		Tolerations: []corev1.Toleration{userTol},
	}
	pod := corev1.PodSpec{
		Containers: []corev1.Container{
			{Name: "app", Image: "v1", VolumeMounts: []corev1.VolumeMount{tokenMount}},
			{Name: "proxy", Image: "injected", VolumeMounts: []corev1.VolumeMount{tokenMount}},
		},
		Volumes:            []corev1.Volume{token},
		Tolerations:        []corev1.Toleration{userTol, notReady},
		ServiceAccountName: "default", SchedulerName: "default-scheduler",
		PriorityClassName: "high", Priority: ptr.To[int32](1000),
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "from-sa"}},
	}
	for _, tc := range []struct {
		name     string
		template *corev1.PodSpec
		out      corev1.PodSpec
		want     corev1.PodSpec
		resolve  bool
	}{
		{
			name:     "an Override's template gets admission's additions",
			template: &template,
			out:      corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "v2"}, {Name: "debug", Image: "busybox"}}},
			want: corev1.PodSpec{
				Containers: []corev1.Container{
					{Name: "app", Image: "v2", VolumeMounts: []corev1.VolumeMount{tokenMount}},
					{Name: "debug", Image: "busybox", VolumeMounts: []corev1.VolumeMount{tokenMount}},
					{Name: "proxy", Image: "injected", VolumeMounts: []corev1.VolumeMount{tokenMount}},
				},
				Volumes:            []corev1.Volume{token},
				Tolerations:        []corev1.Toleration{notReady},
				ServiceAccountName: "default", SchedulerName: "default-scheduler",
				PriorityClassName: "high", Priority: ptr.To[int32](1000),
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: "from-sa"}},
			},
		},
		{
			name:     "what the Override sets stays; another priority class is resolved by the caller",
			template: &template,
			out: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "v2"}}, ServiceAccountName: "canary",
				PriorityClassName: "low", AutomountServiceAccountToken: ptr.To(false)},
			want: corev1.PodSpec{
				Containers: []corev1.Container{
					{Name: "app", Image: "v2", VolumeMounts: []corev1.VolumeMount{tokenMount}},
					{Name: "proxy", Image: "injected", VolumeMounts: []corev1.VolumeMount{tokenMount}},
				},
				Volumes:            []corev1.Volume{token},
				Tolerations:        []corev1.Toleration{notReady},
				ServiceAccountName: "canary", SchedulerName: "default-scheduler", AutomountServiceAccountToken: ptr.To(false),
				PriorityClassName: "low",
				ImagePullSecrets:  []corev1.LocalObjectReference{{Name: "from-sa"}},
			},
			resolve: true,
		},
		{
			name:     "a bare pod: only what admission is known to add",
			template: nil,
			out:      corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "v2"}}},
			want: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "app", Image: "v2", VolumeMounts: []corev1.VolumeMount{tokenMount}}},
				Volumes:    []corev1.Volume{token},
				// userTol and the proxy were the pod's own: the Override's template replaces them.
				Tolerations:        []corev1.Toleration{notReady},
				ServiceAccountName: "default", SchedulerName: "default-scheduler",
				PriorityClassName: "high", Priority: ptr.To[int32](1000),
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := tc.out.DeepCopy()
			resolve := carryOver(out, &pod, tc.template)
			if resolve != tc.resolve || !apiequality.Semantic.DeepEqual(*out, tc.want) {
				t.Errorf("got %+v (resolve %v)\nwant %+v (resolve %v)", *out, resolve, tc.want, tc.resolve)
			}
		})
	}
}

func TestRestrictSites(t *testing.T) {
	spec := &corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "disk", Operator: corev1.NodeSelectorOpExists}}},
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "vk8s.io/site", Operator: corev1.NodeSelectorOpIn, Values: []string{"old"}}}},
		}}}}}
	restrictSites(spec, []string{"site1", "site2"})
	restrictSites(spec, []string{"site2"})
	terms := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 2 || len(terms[0].MatchExpressions) != 2 || terms[0].MatchExpressions[0].Key != "disk" ||
		!slices.Equal(terms[0].MatchExpressions[1].Values, []string{"site2"}) || len(terms[1].MatchExpressions) != 1 ||
		!slices.Equal(terms[1].MatchExpressions[0].Values, []string{"site2"}) {
		t.Errorf("terms %+v", terms)
	}
	tol := &corev1.PodSpec{Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}}
	tolerateVirtualNodes(tol)
	if len(tol.Tolerations) != 1 {
		t.Errorf("a toleration of everything was not enough: %v", tol.Tolerations)
	}
}

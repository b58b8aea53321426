package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func keys(items []*Object) []string {
	var out []string
	for _, o := range items {
		out = append(out, o.Key)
	}
	return out
}

func TestListPrefixAndFilter(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx := context.Background()
	for _, k := range []string{"/pods/a/1", "/pods/a/2", "/pods/b/1", "/podsx/a/1", "/services/a/1"} {
		mustCreate(t, d, k)
	}
	res, err := d.List(ctx, ListOptions{Prefix: "/pods/"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keys(res.Items), ","); got != "/pods/a/1,/pods/a/2,/pods/b/1" {
		t.Fatalf("list = %s", got)
	}
	if res.Revision != 5 || res.Continue != "" || res.RemainingItemCount != nil {
		t.Fatalf("list meta %+v", res)
	}
	res, err = d.List(ctx, ListOptions{Prefix: "/pods/", Filter: func(o *Object) bool { return strings.HasSuffix(o.Key, "/1") }})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keys(res.Items), ","); got != "/pods/a/1,/pods/b/1" {
		t.Fatalf("filtered = %s", got)
	}
	res, err = d.List(ctx, ListOptions{Prefix: "/nothing/"})
	if err != nil || len(res.Items) != 0 {
		t.Fatalf("empty list %+v %v", res, err)
	}
}

func TestListPaginationConsistent(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx := context.Background()
	for i := range 10 {
		mustCreate(t, d, fmt.Sprintf("/p/%02d", i))
	}
	mustCreate(t, d, "/q/0")
	page, err := d.List(ctx, ListOptions{Prefix: "/p/", Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keys(page.Items), ","); got != "/p/00,/p/01,/p/02,/p/03" {
		t.Fatalf("page 1 = %s", got)
	}
	if page.Continue == "" || page.RemainingItemCount == nil || *page.RemainingItemCount != 6 || page.Revision != 11 {
		t.Fatalf("page 1 meta: %+v", page)
	}
	// Writes between pages must not show: the list stays at revision 11.
	if _, err := d.Delete(ctx, "/p/05", Preconditions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Update(ctx, "/p/06", []byte("changed"), Preconditions{}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, d, "/p/045")
	mustCreate(t, d, "/p/99")
	var all []*Object
	all = append(all, page.Items...)
	for page.Continue != "" {
		page, err = d.List(ctx, ListOptions{Prefix: "/p/", Limit: 4, Continue: page.Continue})
		if err != nil {
			t.Fatal(err)
		}
		if page.Revision != 11 {
			t.Fatalf("page at revision %d", page.Revision)
		}
		all = append(all, page.Items...)
	}
	if len(all) != 10 {
		t.Fatalf("paged %d items: %v", len(all), keys(all))
	}
	for i, o := range all {
		if o.Key != fmt.Sprintf("/p/%02d", i) || string(o.Value) != "v:"+o.Key || o.Revision != int64(i+1) {
			t.Fatalf("item %d = %+v", i, o)
		}
	}
	// The latest list sees the writes.
	res, _ := d.List(ctx, ListOptions{Prefix: "/p/"})
	if got := strings.Join(keys(res.Items), ","); got != "/p/00,/p/01,/p/02,/p/03,/p/04,/p/045,/p/06,/p/07,/p/08,/p/09,/p/99" {
		t.Fatalf("latest = %s", got)
	}
}

func TestListPaginationWithFilter(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx := context.Background()
	for i := range 20 {
		mustCreate(t, d, fmt.Sprintf("/p/%02d", i))
	}
	even := func(o *Object) bool { return (o.Key[len(o.Key)-1]-'0')%2 == 0 }
	var got []string
	opts := ListOptions{Prefix: "/p/", Limit: 3, Filter: even}
	for {
		page, err := d.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if page.RemainingItemCount != nil {
			t.Fatalf("remaining count with a filter")
		}
		got = append(got, keys(page.Items)...)
		if page.Continue == "" {
			break
		}
		opts.Continue = page.Continue
	}
	if strings.Join(got, ",") != "/p/00,/p/02,/p/04,/p/06,/p/08,/p/10,/p/12,/p/14,/p/16,/p/18" {
		t.Fatalf("filtered pages = %v", got)
	}
}

func TestListAtRevision(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx := context.Background()
	mustCreate(t, d, "a")                             // 1
	mustCreate(t, d, "b")                             // 2
	d.Update(ctx, "a", []byte("a2"), Preconditions{}) // 3
	d.Delete(ctx, "b", Preconditions{})               // 4
	mustCreate(t, d, "c")                             // 5
	cases := []struct {
		rev  int64
		want string
	}{
		{1, "a=v:a@1"},
		{2, "a=v:a@1,b=v:b@2"},
		{3, "a=a2@3,b=v:b@2"},
		{4, "a=a2@3"},
		{5, "a=a2@3,c=v:c@5"},
		{0, "a=a2@3,c=v:c@5"},
	}
	for _, c := range cases {
		res, err := d.List(ctx, ListOptions{Revision: c.rev})
		if err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, o := range res.Items {
			parts = append(parts, fmt.Sprintf("%s=%s@%d", o.Key, o.Value, o.Revision))
		}
		if got := strings.Join(parts, ","); got != c.want {
			t.Errorf("at %d: %s, want %s", c.rev, got, c.want)
		}
	}
	if _, err := d.List(ctx, ListOptions{Revision: 6}); !errors.Is(err, ErrFutureRevision) {
		t.Fatalf("future: %v", err)
	}
}

func TestListBadContinue(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx := context.Background()
	for i := range 3 {
		mustCreate(t, d, fmt.Sprintf("/p/%d", i))
	}
	if _, err := d.List(ctx, ListOptions{Prefix: "/p/", Continue: "!!garbage"}); !errors.Is(err, ErrInvalidContinue) {
		t.Fatalf("garbage token: %v", err)
	}
	page, err := d.List(ctx, ListOptions{Prefix: "/p/", Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.List(ctx, ListOptions{Prefix: "/q/", Continue: page.Continue}); !errors.Is(err, ErrInvalidContinue) {
		t.Fatalf("token for another prefix: %v", err)
	}
}

func TestListAtRevisionAcrossDeleteAndRecreate(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx := context.Background()
	mustCreate(t, d, "/p/a")               // 1
	mustCreate(t, d, "/p/b")               // 2
	d.Delete(ctx, "/p/b", Preconditions{}) // 3: b gone before the list
	mustCreate(t, d, "/p/d")               // 4
	page, err := d.List(ctx, ListOptions{Prefix: "/p/", Limit: 1})
	if err != nil || page.Revision != 4 || len(page.Items) != 1 || page.Items[0].Key != "/p/a" || page.Continue == "" {
		t.Fatalf("page 1: %+v %v", page, err)
	}
	d.Delete(ctx, "/p/a", Preconditions{})                  // 5
	d.Create(ctx, "/p/a", "new", []byte("new"))             // 6: a recreated
	d.Create(ctx, "/p/b", "new", []byte("new"))             // 7: b recreated after the list
	d.Update(ctx, "/p/b", []byte("newer"), Preconditions{}) // 8
	d.Create(ctx, "/p/c", "", nil)                          // 9
	d.Delete(ctx, "/p/c", Preconditions{})                  // 10
	d.Delete(ctx, "/p/d", Preconditions{})                  // 11
	rest, err := d.List(ctx, ListOptions{Prefix: "/p/", Limit: 10, Continue: page.Continue})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keys(rest.Items), ","); got != "/p/d" || rest.Continue != "" || rest.Revision != 4 {
		t.Fatalf("page 2 at 4: %s (%+v)", got, rest)
	}
	res, _ := d.List(ctx, ListOptions{Prefix: "/p/", Revision: 4})
	if got := strings.Join(keys(res.Items), ","); got != "/p/a,/p/d" || res.Items[0].UID != "uid-/p/a" || res.Items[0].Revision != 1 {
		t.Fatalf("at 4: %s %+v", got, res.Items[0])
	}
	res, _ = d.List(ctx, ListOptions{Prefix: "/p/", Revision: 9})
	if got := strings.Join(keys(res.Items), ","); got != "/p/a,/p/b,/p/c,/p/d" || string(res.Items[1].Value) != "newer" || res.Items[0].UID != "new" {
		t.Fatalf("at 9: %s", got)
	}
	res, _ = d.List(ctx, ListOptions{Prefix: "/p/"})
	if got := strings.Join(keys(res.Items), ","); got != "/p/a,/p/b" {
		t.Fatalf("latest: %s", got)
	}
}

func TestCancelledContext(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Create(ctx, "a", "", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("create: %v", err)
	}
	if _, err := d.Get(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("get: %v", err)
	}
	if _, err := d.List(ctx, ListOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("list: %v", err)
	}
	if d.CurrentRevision() != 0 {
		t.Fatalf("a cancelled create was written")
	}
}

package systemtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/odata-bridge/bridge/demo"
	"github.com/odata-bridge/bridge/tokencache"
)

// olderReleases are the commits a rolling upgrade runs beside this tree: the previous
// release, and the last commit before the sorted-set subject index, whose replicas read
// only the list form of the index.
var olderReleases = []string{"1812595", "9a2ba27"}

// endSubjectMain is a program built inside an older release's tree: it ends a subject
// with that release's token cache, as an operator's tool of that release would.
// Arguments: a Redis URL, or Cluster addresses separated by commas, and the subject;
// BRIDGE_ENCRYPTION_KEYS holds the one key.
const endSubjectMain = `package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/odata-bridge/bridge/tokencache"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	cfg := tokencache.RedisConfig{URL: os.Args[1]}
	if !strings.HasPrefix(os.Args[1], "redis://") {
		cfg = tokencache.RedisConfig{Addrs: strings.Split(os.Args[1], ",")}
	}
	c, err := tokencache.NewRedisClient(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	key, err := tokencache.ParseKey(os.Getenv("BRIDGE_ENCRYPTION_KEYS"))
	if err != nil {
		return err
	}
	s, err := tokencache.New(tokencache.Options{Redis: c, Keys: []tokencache.Key{key}})
	if err != nil {
		return err
	}
	return s.EndSubject(context.Background(), os.Args[2])
}
`

// release is an older release, built from git history.
type release struct {
	commit     string
	bridge     string // its bridge binary
	endSubject string // endSubjectMain built in its tree
}

var releases sync.Map // commit → func() (*release, error)

// buildRelease builds the bridge of an older commit once per test run: the commit's
// tree from git archive into a temporary directory, built there with the module cache
// this tree uses. It skips when git history is not available (a shallow clone), which
// CI, cloning fully, never is.
func buildRelease(t testing.TB, commit string) *release {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: building the previous release needs the repository's history")
	}
	if out, err := exec.Command("git", "-C", "..", "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		shallow, _ := exec.Command("git", "-C", "..", "rev-parse", "--is-shallow-repository").Output()
		if strings.TrimSpace(string(shallow)) == "true" || os.Getenv("CI") == "" {
			t.Skipf("commit %s is not in this clone (shallow: %s): the two-version test builds the previous release from git history: %s",
				commit, strings.TrimSpace(string(shallow)), strings.TrimSpace(string(out)))
		}
		t.Fatalf("commit %s of the previous release is missing from a full clone: %s", commit, out)
	}
	build, _ := releases.LoadOrStore(commit, sync.OnceValues(func() (*release, error) {
		// Beside this tree's binary: removed when the test binary ends.
		dir, err := os.MkdirTemp(filepath.Dir(bridgeBin), "release-"+commit+"-")
		if err != nil {
			return nil, err
		}
		archive := exec.Command("git", "-C", "..", "archive", commit)
		untar := exec.Command("tar", "-x", "-C", dir)
		var archiveErrs, untarErrs bytes.Buffer // one each: the two write at once
		archive.Stderr, untar.Stderr = &archiveErrs, &untarErrs
		if untar.Stdin, err = archive.StdoutPipe(); err != nil {
			return nil, err
		}
		if err := untar.Start(); err != nil {
			return nil, err
		}
		if err := archive.Run(); err != nil {
			return nil, fmt.Errorf("git archive %s: %v: %s", commit, err, archiveErrs.String())
		}
		if err := untar.Wait(); err != nil {
			return nil, fmt.Errorf("tar: %v: %s", err, untarErrs.String())
		}
		tool := filepath.Join(dir, "cmd", "systemtest-endsubject")
		if err := os.MkdirAll(tool, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(tool, "main.go"), []byte(endSubjectMain), 0o644); err != nil {
			return nil, err
		}
		r := &release{commit: commit, bridge: filepath.Join(dir, "bridge"), endSubject: filepath.Join(dir, "endsubject")}
		for out, pkg := range map[string]string{r.bridge: "./cmd/bridge", r.endSubject: "./cmd/systemtest-endsubject"} {
			// Never with -race: the race detector is for this tree's bridge.
			cmd := exec.Command("go", "build", "-o", out, pkg)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
			if out, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("building %s of %s: %v\n%s", pkg, commit, err, out)
			}
		}
		return r, nil
	}))
	r, err := build.(func() (*release, error))()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// version is one release of the bridge in a two-version run and how to end a
// subject with its token cache.
type version struct {
	name       string
	br         *bridge
	endSubject func(t *testing.T, subject string)
}

// TestTwoVersions runs the previous release and this tree side by side on one Redis,
// as a rolling upgrade does, with the minimum store format not raised: what a client
// does on one works on the other in both directions (sign-in, refresh, feeds, feed
// keys, revocation, and EndSubject through each release's token cache), and once the
// old one is stopped every session works on the new one, before and after the format
// is raised. On a Cluster too when BRIDGE_TEST_REDIS_CLUSTER is set.
//
// Building each older release takes about a minute on a busy machine, so the test runs
// only with BRIDGE_TEST_SLOW=1, which .ci/run sets.
func TestTwoVersions(t *testing.T) {
	if os.Getenv("BRIDGE_TEST_SLOW") == "" {
		t.Skip("BRIDGE_TEST_SLOW is not set: building the older releases takes minutes (CI sets it)")
	}
	for _, commit := range olderReleases {
		t.Run(commit, func(t *testing.T) {
			old := buildRelease(t, commit)
			t.Run("standalone", func(t *testing.T) {
				rs := startRedis(t)
				checkTwoVersions(t, old, rs.URL(), nil, true)
			})
			t.Run("cluster", func(t *testing.T) {
				addrs := os.Getenv("BRIDGE_TEST_REDIS_CLUSTER")
				if addrs == "" {
					t.Skip("BRIDGE_TEST_REDIS_CLUSTER is not set")
				}
				// The shared Cluster keeps the format unraised: another run of this
				// test may start an old release on it at any time.
				checkTwoVersions(t, old, "", strings.Split(addrs, ","), false)
			})
		})
	}
}

func checkTwoVersions(t *testing.T, old *release, redisURL string, clusterAddrs []string, raise bool) {
	ctx := context.Background()
	world := startWorld(t, demo.Options{})
	keys := newEncryptionKeys("sys1")
	cfg := bridgeConfig{World: world, RedisURL: redisURL, RedisAddrs: clusterAddrs, EncryptionKeys: keys}
	target := redisURL
	if target == "" {
		target = strings.Join(clusterAddrs, ",")
	}
	c, err := tokencache.NewRedisClient(tokencache.RedisConfig{URL: redisURL, Addrs: clusterAddrs})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key, err := tokencache.ParseKey(keys)
	if err != nil {
		t.Fatal(err)
	}
	store, err := tokencache.New(tokencache.Options{Redis: c, Keys: []tokencache.Key{key}})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if f, err := store.Format(ctx); err != nil || f != tokencache.FormatListIndex {
		t.Fatalf("minimum format before the upgrade: %d, %v; want %d (no key)", f, err, tokencache.FormatListIndex)
	}

	oldCfg := cfg
	oldCfg.Binary = old.bridge
	versions := []version{
		{"release " + old.commit, startBridge(t, oldCfg), func(t *testing.T, subject string) {
			t.Helper()
			cmd := exec.Command(old.endSubject, target, subject)
			cmd.Env = append(os.Environ(), "BRIDGE_ENCRYPTION_KEYS="+keys)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("EndSubject with the previous release: %v: %s", err, out)
			}
		}},
		{"this tree", startBridge(t, cfg), func(t *testing.T, subject string) {
			t.Helper()
			if err := store.EndSubject(ctx, subject); err != nil {
				t.Fatalf("EndSubject with this tree: %v", err)
			}
		}},
	}
	for i, in := range versions {
		other := versions[1-i]
		t.Run("from "+in.name+" to "+other.name, func(t *testing.T) {
			// The demo provider signs in alice, bob and carol only, and its subject is
			// the user name; EndSubject ends all of a user's sessions in this Redis.
			user := []string{"bob", "carol"}[i]
			tok := mustSignIn(t, in.br.URL, user)
			status, tok2, err := refreshGrant(ctx, other.br.URL, tok.Refresh)
			if err != nil || status != http.StatusOK {
				t.Fatalf("refresh on %s of a sign-in on %s: status %d, %v", other.name, in.name, status, err)
			}
			for _, v := range versions {
				if r := get(t, v.br.URL+"/odata/smartobjects/Customers?$top=1", bearer(tok2.Access)); r.Status != http.StatusOK {
					t.Fatalf("feed on %s with the refreshed token: status %d: %s", v.name, r.Status, r.Body)
				}
			}
			if status, _, _ := refreshGrant(ctx, in.br.URL, tok.Refresh); status != http.StatusOK {
				t.Errorf("a retry of the same refresh on %s inside the grace window: status %d, want 200", in.name, status)
			}
			fk := mustCreateKey(t, in.br.URL, tok2.Access)
			if r := get(t, other.br.URL+"/odata/smartobjects/Customers?$top=1", basicKey(fk.Key)); r.Status != http.StatusOK {
				t.Fatalf("feed key made on %s, used on %s: status %d: %s", in.name, other.name, r.Status, r.Body)
			}
			r, err := do(ctx, http.MethodGet, other.br.URL+"/api/keys", bearer(tok2.Access), nil)
			if err != nil || r.Status != http.StatusOK || !strings.Contains(string(r.Body), fk.ID) {
				t.Errorf("the key list on %s: status %d, %v: %s; want the key made on %s", other.name, r.Status, err, r.Body, in.name)
			}

			// Revocation (RFC 7009) on the other release.
			tok3 := mustSignIn(t, in.br.URL, user)
			get(t, in.br.URL+"/odata/smartobjects/Customers?$top=1", bearer(tok3.Access)) // in the hot cache
			revokeToken(t, other.br.URL, tok3.Refresh)
			checkRefusedWithin(t, "a session revoked on "+other.name, time.Now(), []*bridge{in.br}, bearer(tok3.Access))

			// EndSubject through the other release's token cache ends the sessions made
			// on this one: the refreshed session with its key, and one more.
			tok4 := mustSignIn(t, in.br.URL, user)
			other.endSubject(t, user)
			ended := time.Now()
			for _, auth := range []string{bearer(tok2.Access), basicKey(fk.Key), bearer(tok4.Access)} {
				checkRefusedWithin(t, "after EndSubject with "+other.name, ended, []*bridge{in.br, other.br}, auth)
			}
			if status, _, _ := refreshGrant(ctx, in.br.URL, tok4.Refresh); status != http.StatusBadRequest {
				t.Errorf("refresh of an ended session on %s: status %d, want 400", in.name, status)
			}
		})
	}

	// Sessions of both releases outlive the old one.
	type kept struct {
		name string
		tok  tokens
		key  feedKey
	}
	var sessions []kept
	for _, v := range versions {
		for j := range 3 {
			tok := mustSignIn(t, v.br.URL, "alice")
			sessions = append(sessions, kept{fmt.Sprintf("session %d made on %s", j, v.name), tok, mustCreateKey(t, v.br.URL, tok.Access)})
		}
	}
	neu := versions[1].br
	t.Cleanup(func() { // the Cluster may be shared: leave nothing behind
		for _, s := range sessions {
			revokeToken(t, neu.URL, s.tok.Refresh)
		}
	})
	versions[0].br.stop(t)
	checkKept := func(when string) {
		t.Helper()
		for i := range sessions {
			s := &sessions[i]
			for _, auth := range []string{bearer(s.tok.Access), basicKey(s.key.Key)} {
				if r := get(t, neu.URL+"/odata/smartobjects/Customers?$top=1", auth); r.Status != http.StatusOK {
					t.Errorf("%s, %s: status %d: %s", s.name, when, r.Status, r.Body)
				}
			}
			status, next, err := refreshGrant(ctx, neu.URL, s.tok.Refresh)
			if err != nil || status != http.StatusOK {
				t.Errorf("%s, %s: refresh: status %d, %v", s.name, when, status, err)
				continue
			}
			s.tok = next
		}
	}
	checkKept("after the previous release stopped")
	if !raise {
		return
	}

	// The operator raises the minimum format; within its re-read interval the new
	// release writes values of the newest version, and what the old one wrote works.
	raised := time.Now()
	if err := store.RaiseFormat(ctx, tokencache.CurrentFormat); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: strings.TrimSuffix(strings.TrimPrefix(redisURL, "redis://"), "/0")})
	defer rdb.Close()
	deadline := raised.Add(15 * time.Second)
	for {
		tok := mustSignIn(t, neu.URL, "alice")
		v, err := newestSessionVersion(ctx, rdb)
		if err != nil {
			t.Fatal(err)
		}
		if v == 3 {
			t.Logf("the new release wrote version 3 values %v after the format was raised", time.Since(raised).Round(100*time.Millisecond))
			revokeToken(t, neu.URL, tok.Refresh)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("15 s after the format was raised, a new session is still of version %d", v)
		}
		time.Sleep(time.Second)
	}
	checkKept("after the format was raised")
}

// newestSessionVersion returns the version byte of the session value with the longest
// TTL: the one written last.
func newestSessionVersion(ctx context.Context, rdb *redis.Client) (byte, error) {
	var best time.Duration
	var version byte
	iter := rdb.Scan(ctx, 0, "bridge:{*}:session", 1000).Iterator()
	for iter.Next(ctx) {
		ttl, err := rdb.PTTL(ctx, iter.Val()).Result()
		if err != nil {
			return 0, err
		}
		raw, err := rdb.Get(ctx, iter.Val()).Bytes()
		if err != nil {
			return 0, err
		}
		if ttl >= best && len(raw) > 0 {
			best, version = ttl, raw[0]
		}
	}
	if version == 0 && iter.Err() == nil {
		return 0, errors.New("no session in Redis")
	}
	return version, iter.Err()
}

// revokeToken revokes a bridge token (RFC 7009) at base.
func revokeToken(t *testing.T, base, token string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth/revoke", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("revoke on %s: %v", base, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke on %s: status %d", base, resp.StatusCode)
	}
}

package demo

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odata-bridge/bridge/internal/fixtures"
)

// keysOf returns the sorted keys of a JSON object, recursing into nested
// objects as "parent.child".
func keysOf(m map[string]any, prefix string) []string {
	var out []string
	for k, v := range m {
		out = append(out, prefix+k)
		if sub, ok := v.(map[string]any); ok {
			out = append(out, keysOf(sub, prefix+k+".")...)
		}
	}
	slices.Sort(out)
	return out
}

// TestTaskFieldsMatchK2 compares a task's JSON names with a GET tasks answer
// in the shape of K2's Workflow REST API (internal/fixtures).
func TestTaskFieldsMatchK2(t *testing.T) {
	raw := fixtures.Read(t, fixtures.K2TasksExample)
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	want := keysOf(doc["tasks"].([]any)[0].(map[string]any), "")

	_, m := getAs(t, "alice", world.WorkflowURL+"tasks")
	if got, want := keysOf(m, ""), []string{"itemCount", "tasks"}; !slices.Equal(got, want) {
		t.Fatalf("top-level keys = %v, want %v", got, want)
	}
	tasks := m["tasks"].([]any)
	if len(tasks) == 0 {
		t.Fatal("alice has no tasks")
	}
	got := keysOf(tasks[0].(map[string]any), "")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("task keys differ from K2's (-k2 +demo):\n%s", diff)
	}
	task := tasks[0].(map[string]any)
	if _, err := time.Parse(time.RFC3339, task["taskStartDate"].(string)); err != nil {
		t.Errorf("taskStartDate %v is not RFC 3339", task["taskStartDate"])
	}
}

// TestTasksAreTrimmedPerUser checks K2's worklist rule: each user sees
// exactly the tasks assigned to them, and nobody else's.
func TestTasksAreTrimmedPerUser(t *testing.T) {
	seenBy := map[string]string{}
	total := 0
	for _, user := range world.Users {
		var want []string
		for _, tk := range generated().tasks {
			if tk.destination.username == user {
				want = append(want, tk.serialNumber)
			}
		}
		_, m := getAs(t, user, world.WorkflowURL+"tasks")
		var got []string
		for _, tk := range m["tasks"].([]any) {
			got = append(got, tk.(map[string]any)["serialNumber"].(string))
		}
		if n := intOf(t, m["itemCount"]); n != len(got) {
			t.Errorf("%s: itemCount %d, but %d tasks", user, n, len(got))
		}
		if !slices.Equal(got, want) || len(got) == 0 {
			t.Errorf("%s sees %d tasks, want the %d (non-zero) assigned to them", user, len(got), len(want))
		}
		for _, sn := range got {
			if other, ok := seenBy[sn]; ok {
				t.Errorf("task %s is seen by %s and %s", sn, other, user)
			}
			seenBy[sn] = user
		}
		total += len(got)
	}
	if total >= len(generated().tasks) {
		t.Errorf("the demo users see all %d tasks; colleagues' tasks should stay hidden", total)
	}

	// One task by serial number: its assignee gets it, anyone else gets 404.
	var bobs *task
	for _, tk := range generated().tasks {
		if tk.destination.username == "bob" {
			bobs = tk
			break
		}
	}
	r, m := getAs(t, "bob", world.WorkflowURL+"tasks/"+bobs.serialNumber)
	if r.status != 200 || m["serialNumber"] != bobs.serialNumber || m["workflowInstanceDataFields"] == nil {
		t.Errorf("bob GET tasks/%s = %d %v", bobs.serialNumber, r.status, m)
	}
	if r, _ := getAs(t, "alice", world.WorkflowURL+"tasks/"+bobs.serialNumber); r.status != 404 {
		t.Errorf("alice GET bob's task = %d, want 404", r.status)
	}
}

func TestWorkflowsAndInstances(t *testing.T) {
	_, m := getAs(t, "carol", world.WorkflowURL+"workflows")
	wfs := m["workflows"].([]any)
	if intOf(t, m["itemCount"]) != len(workflows) || len(wfs) != len(workflows) {
		t.Fatalf("workflows: itemCount %v, %d items, want %d", m["itemCount"], len(wfs), len(workflows))
	}
	first := wfs[0].(map[string]any)
	if got, want := keysOf(first, ""), []string{"defaultVersionId", "folder", "id", "name", "systemName"}; !slices.Equal(got, want) {
		t.Errorf("workflow keys = %v, want %v", got, want)
	}

	r, m := getAs(t, "carol", world.WorkflowURL+"workflows/3")
	info, _ := m["workflowInfo"].(map[string]any)
	if r.status != 200 || info["name"] != "Leave Request" || m["workflowSchema"] == nil {
		t.Errorf("workflows/3 = %d %v", r.status, m)
	}
	for _, path := range []string{"workflows/99", "workflows/x", "tasks/1_1", "instances/0", "nothing"} {
		if r, m := getAs(t, "carol", world.WorkflowURL+path); r.status != 404 || m["message"] == nil {
			t.Errorf("GET %s = %d %v, want 404 {message}", path, r.status, m)
		}
	}

	// Instances: all of them, per workflow, and by status, with consistent dates.
	_, m = getAs(t, "alice", world.WorkflowURL+"instances")
	all := m["instances"].([]any)
	if len(all) != instanceCount || intOf(t, m["itemCount"]) != instanceCount {
		t.Fatalf("instances: %d items, itemCount %v, want %d", len(all), m["itemCount"], instanceCount)
	}
	byStatus := map[string]int{}
	for _, v := range all {
		in := v.(map[string]any)
		byStatus[in["status"].(string)]++
		start, err := time.Parse(time.RFC3339, in["startDate"].(string))
		if err != nil {
			t.Fatalf("instance %v: startDate %v", in["id"], in["startDate"])
		}
		finish, hasFinish := in["finishDate"].(string)
		switch in["status"] {
		case "Completed", "Stopped":
			f, err := time.Parse(time.RFC3339, finish)
			if !hasFinish || err != nil || !f.After(start) {
				t.Fatalf("instance %v (%v): finishDate %v not after startDate %v", in["id"], in["status"], in["finishDate"], start)
			}
		default:
			if in["finishDate"] != nil {
				t.Fatalf("instance %v (%v) has a finishDate", in["id"], in["status"])
			}
		}
	}
	for _, s := range []string{"Running", "Completed", "Error", "Stopped"} {
		if byStatus[s] == 0 {
			t.Errorf("no %s instances; statistics need every status (%v)", s, byStatus)
		}
	}
	if byStatus["Running"] != len(generated().tasks) {
		t.Errorf("%d running instances but %d tasks, want one task each", byStatus["Running"], len(generated().tasks))
	}

	_, m = getAs(t, "alice", world.WorkflowURL+"instances?status=running")
	if got := intOf(t, m["itemCount"]); got != byStatus["Running"] {
		t.Errorf("instances?status=running: %d, want %d", got, byStatus["Running"])
	}
	perWorkflow := 0
	for _, wf := range workflows {
		_, m := getAs(t, "alice", world.WorkflowURL+"workflows/"+strconv.Itoa(wf.id)+"/instances")
		for _, v := range m["instances"].([]any) {
			if id := intOf(t, v.(map[string]any)["workflowId"]); id != wf.id {
				t.Fatalf("workflows/%d/instances lists an instance of workflow %d", wf.id, id)
			}
			perWorkflow++
		}
	}
	if perWorkflow != instanceCount {
		t.Errorf("per-workflow instance lists hold %d, want %d", perWorkflow, instanceCount)
	}
	r, m = getAs(t, "alice", world.WorkflowURL+"instances/17")
	if r.status != 200 || intOf(t, m["id"]) != 17 {
		t.Errorf("instances/17 = %d %v", r.status, m)
	}
}

func TestWorkflowIsReadOnly(t *testing.T) {
	for _, base := range []string{world.WorkflowURL + "tasks", world.ODataV4URL + "Orders", world.ODataV3URL + "Orders"} {
		r := do(t, http.MethodPost, base, "Bearer "+tokenFor(t, "alice"))
		if r.status != 405 || r.header.Get("Allow") == "" {
			t.Errorf("POST %s = %d (Allow %q), want 405 with Allow", base, r.status, r.header.Get("Allow"))
		}
	}
}

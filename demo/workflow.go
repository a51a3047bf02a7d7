package demo

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// workflowAPI serves the K2 Workflow REST API shape (api/workflow/v1):
// workflows, tasks trimmed to the caller, and workflow instances.
type workflowAPI struct {
	path string // URL path of the API root, ending in "/"
	base string // absolute URL of the upstream host, ending in "/"
	data *dataset
}

// k2Time is K2's date-time form, UTC with milliseconds.
const k2Time = "2006-01-02T15:04:05.000Z07:00"

type (
	workflowItem struct {
		ID               int    `json:"id"`
		DefaultVersionID int    `json:"defaultVersionId"`
		Name             string `json:"name"`
		Folder           string `json:"folder"`
		SystemName       string `json:"systemName"`
	}
	workflowInfo struct {
		ID               int    `json:"id"`
		DefaultVersionID int    `json:"defaultVersionId"`
		Name             string `json:"name"`
		Description      string `json:"description"`
		Folder           string `json:"folder"`
		SystemName       string `json:"systemName"`
		ExpectedDuration int    `json:"expectedDuration"` // minutes
	}
	workflowSchema struct {
		Properties schemaProperties `json:"properties"`
	}
	schemaProperties struct {
		Folio            string            `json:"folio"`
		Priority         int               `json:"priority"`
		ExpectedDuration int               `json:"expectedDuration"`
		DataFields       map[string]string `json:"dataFields"`
		XMLFields        map[string]string `json:"xmlFields"`
		ItemReferences   map[string]string `json:"itemReferences"`
	}
	originatorJSON struct {
		Username    string `json:"username"`
		FQN         string `json:"fqn"`
		Email       string `json:"email"`
		Manager     string `json:"manager"`
		DisplayName string `json:"displayName"`
	}
	actionsJSON struct {
		NonBatchableActions []string `json:"nonBatchableActions"`
		BatchableActions    []string `json:"batchableActions"`
		SystemActions       []string `json:"systemActions"`
	}
	// taskJSON has exactly the field names of K2's GET tasks items.
	taskJSON struct {
		SerialNumber                  string         `json:"serialNumber"`
		Status                        string         `json:"status"`
		TaskStartDate                 string         `json:"taskStartDate"`
		SleepUntil                    *string        `json:"sleepUntil"`
		Priority                      int            `json:"priority"`
		FormURL                       string         `json:"formURL"`
		ViewFlowURL                   string         `json:"viewFlowURL"`
		WorkflowID                    int            `json:"workflowID"`
		WorkflowName                  string         `json:"workflowName"`
		WorkflowDisplayName           string         `json:"workflowDisplayName"`
		WorkflowCategory              string         `json:"workflowCategory"`
		WorkflowInstanceID            int            `json:"workflowInstanceID"`
		WorkflowInstanceFolio         string         `json:"workflowInstanceFolio"`
		ActivityInstanceID            int            `json:"activityInstanceID"`
		ActivityInstanceDestinationID int            `json:"activityInstanceDestinationID"`
		ActivityName                  string         `json:"activityName"`
		EventName                     string         `json:"eventName"`
		EventDescription              string         `json:"eventDescription"`
		Originator                    originatorJSON `json:"originator"`
		Actions                       actionsJSON    `json:"actions"`
		Instruction                   string         `json:"instruction"`
	}
	// taskDetailJSON is GET tasks/{serialNumber}: the list item plus data fields.
	taskDetailJSON struct {
		taskJSON
		ActivityDataFields         map[string]string `json:"activityDataFields"`
		WorkflowInstanceDataFields map[string]any    `json:"workflowInstanceDataFields"`
		WorkflowInstanceXMLFields  []map[string]any  `json:"workflowInstanceXmlFields"`
		ItemReferences             map[string]string `json:"itemReferences"`
	}
	instanceJSON struct {
		ID                  int            `json:"id"`
		WorkflowID          int            `json:"workflowId"`
		WorkflowName        string         `json:"workflowName"`
		WorkflowDisplayName string         `json:"workflowDisplayName"`
		WorkflowCategory    string         `json:"workflowCategory"`
		Folio               string         `json:"folio"`
		Status              string         `json:"status"`
		Priority            int            `json:"priority"`
		ActivityName        string         `json:"activityName"`
		Originator          originatorJSON `json:"originator"`
		StartDate           string         `json:"startDate"`
		FinishDate          *string        `json:"finishDate"`
		ExpectedDuration    int            `json:"expectedDuration"` // minutes
	}
)

// ServeHTTP routes a request below the API root.
func (a *workflowAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeMessage(w, http.StatusMethodNotAllowed, "The requested resource does not support this method.")
		return
	}
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, a.path), "/"), "/")
	user := userFrom(r.Context())
	switch {
	case len(parts) == 1 && parts[0] == "workflows":
		a.workflows(w)
		return
	case len(parts) >= 2 && parts[0] == "workflows":
		id, err := strconv.Atoi(parts[1])
		wf, ok := workflowByID(id)
		if err != nil || !ok {
			break
		}
		switch {
		case len(parts) == 2:
			writeJSON(w, map[string]any{"workflowInfo": infoOf(wf), "workflowSchema": schemaOf(wf)})
			return
		case len(parts) == 3 && parts[2] == "schema":
			writeJSON(w, schemaOf(wf))
			return
		case len(parts) == 3 && parts[2] == "instances":
			a.instances(w, r, wf.id)
			return
		}
	case len(parts) == 1 && parts[0] == "tasks":
		a.tasks(w, user)
		return
	case len(parts) == 2 && parts[0] == "tasks":
		// K2 trims the worklist to the caller: another user's task is not found.
		for _, t := range a.data.tasks {
			if t.serialNumber == parts[1] && t.destination.username == user.username {
				writeJSON(w, a.taskDetail(t))
				return
			}
		}
	case len(parts) == 1 && parts[0] == "instances":
		a.instances(w, r, 0)
		return
	case len(parts) == 2 && parts[0] == "instances":
		id, err := strconv.Atoi(parts[1])
		if err == nil && id >= 1 && id <= len(a.data.instances) {
			writeJSON(w, instanceOf(a.data.instances[id-1]))
			return
		}
	}
	writeMessage(w, http.StatusNotFound, "No resource was found that matches the request URI.")
}

func (a *workflowAPI) workflows(w http.ResponseWriter) {
	items := make([]workflowItem, 0, len(workflows))
	for _, wf := range workflows {
		items = append(items, workflowItem{wf.id, wf.defaultVersionID, wf.name, wf.folder, wf.systemName()})
	}
	writeJSON(w, map[string]any{"itemCount": len(items), "workflows": items})
}

// tasks streams the caller's worklist.
func (a *workflowAPI) tasks(w http.ResponseWriter, user person) {
	var mine []*task
	for _, t := range a.data.tasks {
		if t.destination.username == user.username {
			mine = append(mine, t)
		}
	}
	streamList(w, "tasks", len(mine), func(i int) any { return a.taskOf(mine[i]) })
}

// instances streams workflow instances, optionally of one workflow
// (workflowID > 0) and of one ?status=.
func (a *workflowAPI) instances(w http.ResponseWriter, r *http.Request, workflowID int) {
	status := r.URL.Query().Get("status")
	var sel []*instance
	for _, in := range a.data.instances {
		if (workflowID == 0 || in.workflow.id == workflowID) && (status == "" || strings.EqualFold(status, in.status)) {
			sel = append(sel, in)
		}
	}
	streamList(w, "instances", len(sel), func(i int) any { return instanceOf(sel[i]) })
}

func (a *workflowAPI) taskOf(t *task) taskJSON {
	in := t.instance
	var sleep *string
	if !t.sleepUntil.IsZero() {
		s := t.sleepUntil.Format(k2Time)
		sleep = &s
	}
	return taskJSON{
		SerialNumber:                  t.serialNumber,
		Status:                        t.status,
		TaskStartDate:                 t.start.Format(k2Time),
		SleepUntil:                    sleep,
		Priority:                      in.priority,
		FormURL:                       a.base + "Runtime/Runtime/Form/" + strings.ReplaceAll(in.workflow.name, " ", "+") + "+Task/?SN=" + t.serialNumber,
		ViewFlowURL:                   a.base + "Workspace/TaskListControl/ViewFlow.aspx?ProcessID=" + strconv.Itoa(in.id),
		WorkflowID:                    in.workflow.id,
		WorkflowName:                  in.workflow.systemName(),
		WorkflowDisplayName:           in.workflow.name,
		WorkflowCategory:              in.workflow.folder,
		WorkflowInstanceID:            in.id,
		WorkflowInstanceFolio:         in.folio,
		ActivityInstanceID:            t.activityID,
		ActivityInstanceDestinationID: t.destinationID,
		ActivityName:                  t.activityName,
		EventName:                     t.activityName + " Task",
		EventDescription:              "",
		Originator:                    originatorOf(in.originator),
		Actions:                       actionsJSON{t.nonBatchable, t.batchable, t.systemActions},
		Instruction:                   "Please review " + in.folio + " (" + in.workflow.name + ") from " + in.originator.displayName + ".",
	}
}

func (a *workflowAPI) taskDetail(t *task) taskDetailJSON {
	return taskDetailJSON{
		taskJSON:           a.taskOf(t),
		ActivityDataFields: map[string]string{},
		WorkflowInstanceDataFields: map[string]any{
			"Folio": t.instance.folio, "Originator": t.instance.originator.fqn(), "Priority": t.instance.priority,
		},
		WorkflowInstanceXMLFields: []map[string]any{},
		ItemReferences:            map[string]string{},
	}
}

func originatorOf(p person) originatorJSON {
	var manager string
	if m, ok := personByName(p.manager); ok {
		manager = m.fqn()
	}
	return originatorJSON{p.username, p.fqn(), p.email(), manager, p.displayName}
}

func infoOf(wf workflow) workflowInfo {
	return workflowInfo{wf.id, wf.defaultVersionID, wf.name, wf.description, wf.folder, wf.systemName(), int(wf.expected / time.Minute)}
}

func schemaOf(wf workflow) workflowSchema {
	return workflowSchema{schemaProperties{
		Priority:         1,
		ExpectedDuration: int(wf.expected / time.Minute),
		DataFields:       map[string]string{"Amount": "Decimal", "Comments": "String"},
		XMLFields:        map[string]string{},
		ItemReferences:   map[string]string{},
	}}
}

func instanceOf(in *instance) instanceJSON {
	var finish *string
	if !in.finish.IsZero() {
		s := in.finish.Format(k2Time)
		finish = &s
	}
	return instanceJSON{
		ID: in.id, WorkflowID: in.workflow.id, WorkflowName: in.workflow.systemName(),
		WorkflowDisplayName: in.workflow.name, WorkflowCategory: in.workflow.folder, Folio: in.folio,
		Status: in.status, Priority: in.priority, ActivityName: in.activity, Originator: originatorOf(in.originator),
		StartDate: in.start.Format(k2Time), FinishDate: finish, ExpectedDuration: int(in.workflow.expected / time.Minute),
	}
}

// streamList writes {"itemCount":n,"<name>":[…]} one item at a time.
func streamList(w http.ResponseWriter, name string, n int, item func(int) any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	head := append([]byte(`{"itemCount":`), strconv.Itoa(n)...)
	head = append(head, ',')
	head = appendJSONString(head, name)
	head = append(head, ":["...)
	if _, err := w.Write(head); err != nil {
		return
	}
	for i := range n {
		b, err := json.Marshal(item(i))
		if err != nil {
			return
		}
		if i > 0 {
			b = append([]byte{','}, b...)
		}
		if _, err := w.Write(b); err != nil {
			return // the client went away
		}
	}
	_, _ = w.Write([]byte("]}"))
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeMessage(w, http.StatusInternalServerError, "An error has occurred.")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(b)
}

// writeMessage writes an error in the ASP.NET Web API shape K2's REST API uses.
func writeMessage(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(map[string]string{"message": msg})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

package demo

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Row counts of the generated data. Orders is the largest set and spans
// several server-driven pages.
const (
	customerCount = 1500
	orderCount    = 12000
	instanceCount = 6000
)

// edmType is the EDM type of a property; edmDateTime is Edm.DateTimeOffset
// in v4 and Edm.DateTime in v3.
type edmType int

const (
	edmInt32 edmType = iota
	edmString
	edmDecimal
	edmBoolean
	edmDateTime
)

// property is one structural property of an entity type.
type property struct {
	name     string
	typ      edmType
	nullable bool
}

// entitySet is one generated table. props[0] is the key, an Edm.Int32, and
// rows are in key order. A value is int64, string, float64 (decimal), bool,
// time.Time or nil.
type entitySet struct {
	name     string
	typeName string
	props    []property
	rows     [][]any
	byKey    map[int64]int
}

// prop returns the index of the named property, or -1.
func (s *entitySet) prop(name string) int {
	for i, p := range s.props {
		if p.name == name {
			return i
		}
	}
	return -1
}

// person is someone in the demo organisation: an originator, a sales rep or
// a task destination.
type person struct {
	username    string
	displayName string
	manager     string
}

// fqn is the K2 fully qualified user name.
func (p person) fqn() string { return `K2:DEMO\` + p.username }

// email is the demo mailbox of the person.
func (p person) email() string { return p.username + "@demo.example" }

// staff is the demo organisation. The first three can sign in.
var staff = []person{
	{"alice", "Alice Andrews", "grace"},
	{"bob", "Bob Baker", "alice"},
	{"carol", "Carol Chen", "grace"},
	{"dave", "Dave Dlamini", "alice"},
	{"erin", "Erin Evans", "carol"},
	{"frank", "Frank Fischer", "carol"},
	{"grace", "Grace Gupta", ""},
	{"heidi", "Heidi Hansen", "alice"},
	{"ivan", "Ivan Ivanov", "carol"},
	{"judy", "Judy Jones", "alice"},
}

// demoUsers are the people who can sign in at the provider.
var demoUsers = staff[:3]

// personByName returns the staff member with that user name.
func personByName(name string) (person, bool) {
	for _, p := range staff {
		if p.username == name {
			return p, true
		}
	}
	return person{}, false
}

// workflow is a workflow definition of the Workflow REST API.
type workflow struct {
	id               int
	defaultVersionID int
	name             string
	folder           string
	description      string
	prefix           string // folio prefix
	activities       []string
	actions          []string
	expected         time.Duration
}

// systemName is the K2 full name, folder and name.
func (w workflow) systemName() string { return w.folder + `\` + w.name }

var workflows = []workflow{
	{1, 1007, "Purchase Order Approval", "Finance", "Approves purchase orders above the buying limit.", "PO",
		[]string{"Manager Approval", "Finance Approval"}, []string{"Approve", "Reject"}, 48 * time.Hour},
	{2, 1014, "Expense Claim", "Finance", "Reviews and pays employee expense claims.", "EXP",
		[]string{"Manager Approval", "Payment"}, []string{"Approve", "Reject"}, 72 * time.Hour},
	{3, 1021, "Leave Request", "HR", "Grants annual and special leave.", "LR",
		[]string{"Manager Approval"}, []string{"Approve", "Decline"}, 24 * time.Hour},
	{4, 1028, "Customer Onboarding", "Sales", "Checks credit and sets up new customer accounts.", "ONB",
		[]string{"Credit Check", "Account Setup"}, []string{"Complete", "Reject"}, 120 * time.Hour},
	{5, 1035, "Contract Review", "Legal", "Reviews and signs customer contracts.", "CTR",
		[]string{"Legal Review", "Sign-off"}, []string{"Approve", "Send Back"}, 168 * time.Hour},
	{6, 1042, "IT Access Request", "IT", "Grants access to business applications.", "ITA",
		[]string{"Manager Approval", "Provisioning"}, []string{"Approve", "Reject"}, 24 * time.Hour},
}

// workflowByID returns the workflow with that ID.
func workflowByID(id int) (workflow, bool) {
	for _, w := range workflows {
		if w.id == id {
			return w, true
		}
	}
	return workflow{}, false
}

// instance is one workflow instance.
type instance struct {
	id         int
	workflow   workflow
	folio      string
	status     string // Running, Completed, Error, Stopped
	originator person
	priority   int
	start      time.Time
	finish     time.Time // zero while running or in error
	activity   string    // current or last activity
}

// task is a worklist item of a running instance, assigned to one person.
type task struct {
	serialNumber  string
	status        string // Available, Open, Allocated, Sleep
	start         time.Time
	sleepUntil    time.Time
	instance      *instance
	activityID    int
	destinationID int
	activityName  string
	destination   person
	batchable     []string
	nonBatchable  []string
	systemActions []string
}

// dataset is the whole generated world: the OData entity sets and the
// Workflow REST API's workflows, instances and tasks.
type dataset struct {
	sets      []*entitySet
	instances []*instance
	tasks     []*task
}

// set returns the entity set with that name, or nil.
func (d *dataset) set(name string) *entitySet {
	for _, s := range d.sets {
		if s.name == name {
			return s
		}
	}
	return nil
}

// epoch is the first day of the generated history.
var epoch = time.Date(2025, 1, 6, 8, 0, 0, 0, time.UTC)

// historySpan is how far the generated history reaches past epoch.
const historySpan = 680 * 24 * time.Hour

var (
	companyHeads = []string{"Alpine", "Blue River", "Cedar", "Delta", "Evergreen", "Falcon", "Granite", "Harbor",
		"Iron Gate", "Juniper", "Kestrel", "Lakeside", "Maple", "Northwind", "O'Neill", "Orion", "Pioneer",
		"Quartz", "Redwood", "Summit", "Tidewater", "Union", "Vertex", "Willow", "Zenith"}
	companyTrades = []string{"Logistics", "Foods", "Systems", "Health", "Energy", "Textiles", "Motors", "Pharma",
		"Retail", "Media", "Capital", "Labs"}
	companyForms = []string{"Ltd", "GmbH", "Inc.", "S.A.", "AB", "B.V.", "Pty Ltd", "Oy"}
	places       = []struct{ country, city, currency string }{
		{"Germany", "München", "EUR"}, {"Switzerland", "Zürich", "CHF"}, {"Brazil", "São Paulo", "BRL"},
		{"Sweden", "Malmö", "SEK"}, {"Poland", "Kraków", "PLN"}, {"Canada", "Montréal", "CAD"},
		{"Iceland", "Reykjavík", "ISK"}, {"United States", "Seattle", "USD"}, {"United Kingdom", "London", "GBP"},
		{"France", "Lyon", "EUR"}, {"Japan", "Osaka", "JPY"}, {"South Africa", "Cape Town", "ZAR"},
		{"Australia", "Melbourne", "AUD"}, {"Netherlands", "Utrecht", "EUR"},
	}
	segments      = []string{"Enterprise", "Mid-Market", "Small Business", "Public Sector"}
	orderStatuses = []string{"Open", "Approved", "Shipped", "Invoiced", "Cancelled"}
)

// generate builds the deterministic demo data: the same seed gives the same
// rows on every run and every machine.
func generate() *dataset {
	rng := rand.New(rand.NewPCG(2026, 4))
	d := &dataset{}

	customers := &entitySet{name: "Customers", typeName: "Customer", props: []property{
		{"CustomerID", edmInt32, false}, {"Name", edmString, false}, {"Country", edmString, false},
		{"City", edmString, false}, {"Segment", edmString, false}, {"CreditLimit", edmDecimal, false},
		{"AccountManager", edmString, false}, {"CreatedOn", edmDateTime, false}, {"IsActive", edmBoolean, false},
	}}
	custCurrency := make([]string, customerCount+1)
	for id := 1; id <= customerCount; id++ {
		pl := places[rng.IntN(len(places))]
		custCurrency[id] = pl.currency
		name := fmt.Sprintf("%s %s %s", companyHeads[rng.IntN(len(companyHeads))],
			companyTrades[rng.IntN(len(companyTrades))], companyForms[rng.IntN(len(companyForms))])
		created := epoch.Add(-time.Duration(rng.IntN(5*365*24)) * time.Hour)
		customers.rows = append(customers.rows, []any{
			int64(id), name, pl.country, pl.city, segments[rng.IntN(len(segments))],
			float64(5+rng.IntN(196)) * 2500, staff[rng.IntN(len(staff))].username, created, rng.IntN(10) != 0,
		})
	}

	orders := &entitySet{name: "Orders", typeName: "Order", props: []property{
		{"OrderID", edmInt32, false}, {"CustomerID", edmInt32, false}, {"OrderDate", edmDateTime, false},
		{"Status", edmString, false}, {"Amount", edmDecimal, false}, {"Currency", edmString, false},
		{"SalesRep", edmString, false}, {"ShippedDate", edmDateTime, true},
	}}
	for id := 1; id <= orderCount; id++ {
		cust := 1 + rng.IntN(customerCount)
		at := epoch.Add(historySpan / orderCount * time.Duration(id)).Add(time.Duration(rng.IntN(3600)) * time.Second)
		status := orderStatuses[rng.IntN(len(orderStatuses))]
		if id > orderCount-300 {
			status = "Open"
		}
		var shipped any
		if status == "Shipped" || status == "Invoiced" {
			shipped = at.Add(time.Duration(24+rng.IntN(24*10)) * time.Hour)
		}
		cents := 5000 + rng.IntN(2_500_000)
		orders.rows = append(orders.rows, []any{
			int64(id), int64(cust), at, status, float64(cents) / 100, custCurrency[cust],
			staff[rng.IntN(len(staff))].username, shipped,
		})
	}

	d.instances = generateInstances(rng)
	instances := &entitySet{name: "WorkflowInstances", typeName: "WorkflowInstance", props: []property{
		{"InstanceID", edmInt32, false}, {"WorkflowID", edmInt32, false}, {"WorkflowName", edmString, false},
		{"Folio", edmString, false}, {"Status", edmString, false}, {"Originator", edmString, false},
		{"Priority", edmInt32, false}, {"ActivityName", edmString, false}, {"StartDate", edmDateTime, false},
		{"FinishDate", edmDateTime, true},
	}}
	for _, in := range d.instances {
		var finish any
		if !in.finish.IsZero() {
			finish = in.finish
		}
		instances.rows = append(instances.rows, []any{
			int64(in.id), int64(in.workflow.id), in.workflow.name, in.folio, in.status, in.originator.username,
			int64(in.priority), in.activity, in.start, finish,
		})
	}
	d.tasks = generateTasks(rng, d.instances)

	d.sets = []*entitySet{customers, orders, instances}
	for _, s := range d.sets {
		s.byKey = make(map[int64]int, len(s.rows))
		for i, r := range s.rows {
			s.byKey[r[0].(int64)] = i
		}
	}
	return d
}

// generateInstances makes the workflow instances, oldest first. Old ones
// are mostly completed; the newest are mostly still running.
func generateInstances(rng *rand.Rand) []*instance {
	out := make([]*instance, 0, instanceCount)
	perPrefix := map[string]int{}
	for id := 1; id <= instanceCount; id++ {
		wf := workflows[rng.IntN(len(workflows))]
		start := epoch.Add(historySpan / instanceCount * time.Duration(id)).Add(time.Duration(rng.IntN(7200)) * time.Second)
		perPrefix[wf.prefix]++
		in := &instance{
			id:         id,
			workflow:   wf,
			folio:      fmt.Sprintf("%s-%d-%06d", wf.prefix, start.Year(), perPrefix[wf.prefix]),
			originator: staff[rng.IntN(len(staff))],
			priority:   rng.IntN(3),
			start:      start,
		}
		p := rng.Float64()
		switch {
		case id > instanceCount*17/20 && p < 0.70:
			in.status = "Running"
		case p < 0.05:
			in.status = "Error"
		case p < 0.10:
			in.status = "Stopped"
		default:
			in.status = "Completed"
		}
		// Durations are log-normal around the workflow's expected duration.
		dur := time.Duration(float64(wf.expected) * math.Exp(rng.NormFloat64()*0.6)).Round(time.Second)
		switch in.status {
		case "Completed":
			in.finish = start.Add(dur)
			in.activity = wf.activities[len(wf.activities)-1]
		case "Stopped":
			in.finish = start.Add(dur / 2)
			in.activity = wf.activities[0]
		default:
			in.activity = wf.activities[rng.IntN(len(wf.activities))]
		}
		out = append(out, in)
	}
	return out
}

// generateTasks gives every running instance one task. Most go to the demo
// users, some to colleagues who cannot sign in, so trimming is visible.
func generateTasks(rng *rand.Rand, instances []*instance) []*task {
	var out []*task
	activityID, destinationID := 100000, 200000
	for _, in := range instances {
		if in.status != "Running" {
			continue
		}
		activityID++
		destinationID++
		var dest person
		switch p := rng.Float64(); {
		case p < 0.40:
			dest = staff[0]
		case p < 0.65:
			dest = staff[1]
		case p < 0.80:
			dest = staff[2]
		default:
			dest = staff[3+rng.IntN(len(staff)-3)]
		}
		t := &task{
			serialNumber:  fmt.Sprintf("%d_%d", in.id, destinationID),
			status:        "Available",
			start:         in.start.Add(time.Duration(1+rng.IntN(48)) * time.Hour),
			instance:      in,
			activityID:    activityID,
			destinationID: destinationID,
			activityName:  in.activity,
			destination:   dest,
			batchable:     in.workflow.actions,
			nonBatchable:  []string{},
			systemActions: []string{"Redirect", "Delegate", "Sleep", "Release"},
		}
		switch p := rng.Float64(); {
		case p < 0.35:
			t.status = "Open"
		case p < 0.45:
			t.status = "Allocated"
		case p < 0.50:
			t.status = "Sleep"
			t.sleepUntil = t.start.Add(72 * time.Hour)
		}
		out = append(out, t)
	}
	return out
}

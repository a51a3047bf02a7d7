package rest

import (
	"fmt"
	"slices"
)

// Names of the built-in mappings.
const (
	// PresetK2Workflow maps K2's Workflow REST API (api/workflow/v1), with
	// instances read from GET instances.
	PresetK2Workflow = "k2-workflow"
	// PresetK2WorkflowPerWorkflow is PresetK2Workflow with instances read
	// per workflow from GET workflows/{id}/instances.
	PresetK2WorkflowPerWorkflow = "k2-workflow-instances-per-workflow"
)

// Presets lists the names Preset accepts.
func Presets() []string { return []string{PresetK2Workflow, PresetK2WorkflowPerWorkflow} }

// Preset returns a fresh copy of a named mapping, ready for New.
func Preset(name string) ([]EntitySet, error) {
	switch name {
	case PresetK2Workflow:
		return k2Workflow(), nil
	case PresetK2WorkflowPerWorkflow:
		return K2WorkflowInstancesPerWorkflow(k2Workflow()), nil
	}
	return nil, fmt.Errorf("%w: unknown preset %q (known: %v)", ErrMapping, name, Presets())
}

// k2Workflow follows the JSON names of K2's documented Workflow REST API:
//
//	GET workflows -> {itemCount, workflows:[{id, defaultVersionId, name, folder, systemName}]}
//	GET tasks     -> {itemCount, tasks:[{serialNumber, status, taskStartDate, …, originator:{…}, actions:{…}}]}
//
// Instances are not part of K2's documented v1 list endpoints. The preset
// assumes GET instances -> {itemCount, instances:[{id, workflowId,
// workflowName, workflowDisplayName, workflowCategory, folio, status,
// priority, activityName, originator:{…}, startDate, finishDate,
// expectedDuration}]}, the shape the demo upstream serves;
// an upstream that lists them per workflow instead is served by the same
// mapping with Path "workflows/{id}/instances" and Parent "Workflows" (see
// K2WorkflowInstancesPerWorkflow). Fields the upstream does not send are null.
func k2Workflow() []EntitySet {
	originator := func(prefix string) []Property {
		return []Property{
			{Name: "originator_username", Source: prefix + ".username", Type: EdmString},
			{Name: "originator_fqn", Source: prefix + ".fqn", Type: EdmString},
			{Name: "originator_email", Source: prefix + ".email", Type: EdmString},
			{Name: "originator_manager", Source: prefix + ".manager", Type: EdmString},
			{Name: "originator_displayName", Source: prefix + ".displayName", Type: EdmString},
		}
	}
	return []EntitySet{
		{
			Name: "Workflows", Path: "workflows", Items: "workflows", Key: "id",
			Properties: []Property{
				{Name: "id", Type: EdmInt32},
				{Name: "defaultVersionId", Type: EdmInt32},
				{Name: "name", Type: EdmString},
				{Name: "folder", Type: EdmString},
				{Name: "systemName", Type: EdmString},
			},
		},
		{
			Name: "Tasks", Path: "tasks", Items: "tasks", Key: "serialNumber",
			Properties: slices.Concat([]Property{
				{Name: "serialNumber", Type: EdmString},
				{Name: "status", Type: EdmString},
				{Name: "taskStartDate", Type: EdmDateTimeOffset},
				{Name: "sleepUntil", Type: EdmDateTimeOffset},
				{Name: "priority", Type: EdmInt32},
				{Name: "formURL", Type: EdmString},
				{Name: "viewFlowURL", Type: EdmString},
				{Name: "workflowID", Type: EdmInt32},
				{Name: "workflowName", Type: EdmString},
				{Name: "workflowDisplayName", Type: EdmString},
				{Name: "workflowCategory", Type: EdmString},
				{Name: "workflowInstanceID", Type: EdmInt32},
				{Name: "workflowInstanceFolio", Type: EdmString},
				{Name: "activityInstanceID", Type: EdmInt32},
				{Name: "activityInstanceDestinationID", Type: EdmInt32},
				{Name: "activityName", Type: EdmString},
				{Name: "eventName", Type: EdmString},
				{Name: "eventDescription", Type: EdmString},
				{Name: "instruction", Type: EdmString},
			}, originator("originator"), []Property{
				{Name: "actions_nonBatchable", Source: "actions.nonBatchableActions", Type: EdmString},
				{Name: "actions_batchable", Source: "actions.batchableActions", Type: EdmString},
				{Name: "actions_system", Source: "actions.systemActions", Type: EdmString},
			}),
		},
		{
			Name: "Instances", Path: "instances", Items: "instances", Key: "id",
			Properties: slices.Concat([]Property{
				{Name: "id", Type: EdmInt32},
				{Name: "folio", Type: EdmString},
				{Name: "status", Type: EdmString},
				{Name: "priority", Type: EdmInt32},
				{Name: "startDate", Type: EdmDateTimeOffset},
				{Name: "finishDate", Type: EdmDateTimeOffset},
				{Name: "expectedDuration", Type: EdmInt32},
				{Name: "workflowId", Type: EdmInt32},
				{Name: "workflowName", Type: EdmString},
				{Name: "workflowDisplayName", Type: EdmString},
				{Name: "workflowCategory", Type: EdmString},
				{Name: "activityName", Type: EdmString},
			}, originator("originator")),
		},
	}
}

// K2WorkflowInstancesPerWorkflow rewrites the k2-workflow preset's Instances
// set for an upstream that lists instances per workflow at
// workflows/{id}/instances: one call per workflow the caller can see, with
// the workflow columns taken from the parent row.
func K2WorkflowInstancesPerWorkflow(sets []EntitySet) []EntitySet {
	out := slices.Clone(sets)
	for i := range out {
		if out[i].Name != "Instances" {
			continue
		}
		out[i].Path = "workflows/{id}/instances"
		out[i].Parent = "Workflows"
		props := slices.Clone(out[i].Properties)
		for j := range props {
			// As in K2's task list: workflowName is the system name,
			// workflowDisplayName the name, workflowCategory the folder.
			switch props[j].Name {
			case "workflowId":
				props[j].Source = "$parent.id"
			case "workflowName":
				props[j].Source = "$parent.systemName"
			case "workflowDisplayName":
				props[j].Source = "$parent.name"
			case "workflowCategory":
				props[j].Source = "$parent.folder"
			}
		}
		out[i].Properties = props
	}
	return out
}

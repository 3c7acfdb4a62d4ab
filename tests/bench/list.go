package main

import "go.temporal.io/api/workflowservice/v1"

func listRequest(id string) *workflowservice.ListWorkflowExecutionsRequest {
	return &workflowservice.ListWorkflowExecutionsRequest{Query: "WorkflowId = '" + id + "'"}
}

// Command kstatus prints kstatus' verdict (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, what Flux's
// `wait: true` and other cli-utils based tools use) for each object it reads.
//
// Input: one JSON object, or a JSON list {"items": [...]} as `kubectl get -o json` prints it, on stdin.
// Output: one JSON line per object: {"name": ..., "status": "Current|InProgress|Failed|...", "message": ...}.
// The integration tests feed it objects read from the test bed's apiserver.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	// apimachinery's decoder: whole numbers become int64, as status.Compute expects of generations.
	var doc map[string]interface{}
	if err := utiljson.Unmarshal(raw, &doc); err != nil {
		fail("stdin is not a JSON object: %v", err)
	}
	objects := []map[string]interface{}{doc}
	if items, ok := doc["items"].([]interface{}); ok {
		objects = objects[:0]
		for _, item := range items {
			obj, ok := item.(map[string]interface{})
			if !ok {
				fail("an item of the list is not an object")
			}
			objects = append(objects, obj)
		}
	}
	out := json.NewEncoder(os.Stdout)
	for _, obj := range objects {
		u := &unstructured.Unstructured{Object: obj}
		result, err := status.Compute(u)
		if err != nil {
			fail("status.Compute(%s): %v", u.GetName(), err)
		}
		if err := out.Encode(verdict{u.GetName(), string(result.Status), result.Message}); err != nil {
			fail("writing: %v", err)
		}
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(1)
}

# The policy gate as Rego, for conftest (`conftest test --policy examples/gitops/policy plan.json`)
# or OPA (`opa eval -d examples/gitops/policy -i plan.json data.main.deny`): the same rule as the
# jq line in examples/gitops/README.md. Deleting a namespace removes every device, address and
# route inside it, including ones nkplan does not manage, so a plan that deletes one (a replace is
# ["delete", "create"] and counts too) is refused. Input: nkplan's JSON plan document (plan
# --format json), or a saved plan (--out), which holds the same fields.
# tests/unit/test_gitops_examples.py evaluates it on the samples with rego-cpp (regopy).
package main

import rego.v1

deny contains msg if {
	some rc in input.resource_changes
	rc.type == "namespace"
	"delete" in rc.change.actions
	msg := sprintf("the plan deletes %s: every device, address and route in it goes too", [rc.address])
}

# Data slices a specialist may touch: selector history and write scopes.
package cmo.slices

import rego.v1

# Selector history is the healer's alone.
deny contains msg if {
	_wants_selector_history
	input.specialist != "healer"
	msg := sprintf("selector history is reserved to the healer specialist (requested by %s)", [_who])
}

# A write scope must lie under healing/.
deny contains msg if {
	some scope in input.write_scopes
	not startswith(scope, "healing/")
	msg := sprintf("write scope %s is outside healing/*", [scope])
}

# A scope that climbs out of healing/ with .. is outside it too.
deny contains msg if {
	some scope in input.write_scopes
	startswith(scope, "healing/")
	contains(scope, "..")
	msg := sprintf("write scope %s is outside healing/*", [scope])
}

_wants_selector_history if input.task == "selector_history"

_wants_selector_history if "selector_history" in input.fields

_who := input.specialist if input.specialist != ""

_who := sprintf("a %s activity", [input.activity]) if input.specialist == ""

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

# Case does not matter, as for the PII fields: "Selector_History" is the same slice.
_wants_selector_history if lower(input.task) == "selector_history"

_wants_selector_history if {
	some field in input.fields
	lower(field) == "selector_history"
}

_who := input.specialist if input.specialist != ""

_who := sprintf("activity %s", [input.activity]) if input.specialist == ""

# Only specialists registered (and enabled) in the registry may be called.
package cmo.registry

import rego.v1

deny contains msg if {
	input.specialist != ""
	not input.specialist in data.registry.specialists
	msg := sprintf("specialist %s is not registered", [input.specialist])
}

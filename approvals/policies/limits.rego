# Size limits on what crosses the activity boundary.
package cmo.limits

import rego.v1

max_payload_bytes := 10485760

deny contains msg if {
	input.size > max_payload_bytes
	msg := sprintf("payload of %d bytes is over the 10 MB limit (%d bytes)", [input.size, max_payload_bytes])
}

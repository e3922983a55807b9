# The one entrypoint the engine evaluates: every package's denials, together.
package cmo.main

import rego.v1

deny := (((data.cmo.slices.deny | data.cmo.privacy.deny) | data.cmo.limits.deny) | data.cmo.registry.deny) | data.cmo.models.deny

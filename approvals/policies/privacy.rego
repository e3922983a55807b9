# Personal data (PII) is for the admin role only.
package cmo.privacy

import rego.v1

pii_fields := {
	"email", "phone", "phone_number", "ssn", "social_security_number", "date_of_birth", "dob",
	"address", "home_address", "full_name", "passport_number", "credit_card", "card_number",
	"iban", "ip_address", "pii",
}

deny contains msg if {
	some field in input.fields
	lower(field) in pii_fields
	input.role != "admin"
	msg := sprintf("field %s is personal data (PII): only the admin role may request it (role: %s)", [field, _role])
}

_role := input.role if input.role != ""

_role := "none" if input.role == ""

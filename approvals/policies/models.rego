# Model calls (ctx.activities.llm): which models a deployment refuses, and who may spend how much.
# input.llm holds provider, model, estimated_input_tokens, max_tokens, spend {tokens, cost_usd} and budget.
package cmo.models

import rego.v1

# Retired or too costly models: a call naming one is refused before it is sent. Edit to suit.
blocked_models := {"gpt-4-32k", "claude-2.0", "claude-instant-1.2"}

deny contains msg if {
	input.activity == "llm"
	input.llm.model in blocked_models
	msg := sprintf("model %s is blocked by policy (provider %s)", [input.llm.model, input.llm.provider])
}

# A run that has already spent more than $50 on models needs the admin role to spend more.
max_spend_usd_without_admin := 50

deny contains msg if {
	input.activity == "llm"
	input.llm.spend.cost_usd > max_spend_usd_without_admin
	input.role != "admin"
	msg := sprintf("the run has spent $%v on models; over $%v needs the admin role (role: %s)", [input.llm.spend.cost_usd, max_spend_usd_without_admin, input.role])
}

"""Two builds of one graph for the deploy test (tests/integration/test_deploy_versions.py): a worker loads
v1 or v2 through CMO_GRAPH_MODULES, as an old and a new release would."""

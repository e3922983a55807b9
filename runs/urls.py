from django.urls import path

from runs import views

app_name = "runs"

urlpatterns = [
    path("", views.home, name="home"),
    path("runs/", views.run_list, name="run_list"),
    path("runs/new/", views.run_new, name="run_new"),
    path("runs/<str:trace_id>/", views.run_detail, name="run_detail"),
    path("runs/<str:trace_id>/abort/", views.run_abort_view, name="run_abort"),
    path("runs/<str:trace_id>/move/", views.run_move, name="run_move"),
    path("runs/<str:trace_id>/steps/<int:index>/inspector/", views.step_inspector, name="step_inspector"),
    path("runs/<str:trace_id>/lanes/", views.run_lanes, name="run_lanes"),
    path("runs/<str:trace_id>/signal/", views.run_signal_view, name="run_signal"),
    path("graphs/", views.graph_list, name="graph_list"),
    path("graphs/<str:name>/", views.graph_detail, name="graph_detail"),
]

"""URLs of the test SensorThings server: STA v1.1 under /sensorthings/v1.1/."""
from django.urls import include, path

urlpatterns = [path("sensorthings/", include("sensorthings.versions.v1_1.urls"))]

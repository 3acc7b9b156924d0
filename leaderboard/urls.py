from django.urls import path

from .views import pages

app_name = "leaderboard"

urlpatterns = [
    path("", pages.home, name="home"),
]

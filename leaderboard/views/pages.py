"""Public HTML pages (server-rendered)."""

from django.shortcuts import render


def home(request):
    return render(request, "leaderboard/home.html", {})

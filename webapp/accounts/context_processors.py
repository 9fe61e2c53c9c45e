def teams(request):
    return {}

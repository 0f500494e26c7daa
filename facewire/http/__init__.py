"""The HTTP gateway and its web pages: a client of the ZeroMQ server like any other (app, cli, static/).

It knows nothing of dlib: images are decoded here only to check them with the server's own
limits (faces/images.py), and every face is found by the server.
"""

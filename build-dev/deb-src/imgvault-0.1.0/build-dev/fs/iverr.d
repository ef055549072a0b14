build-dev/fs/iverr.o: fs/iverr.c fs/iverr.h
fs/iverr.h:

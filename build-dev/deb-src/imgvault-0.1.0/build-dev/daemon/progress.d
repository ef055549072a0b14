build-dev/daemon/progress.o: daemon/progress.c daemon/progress.h
daemon/progress.h:

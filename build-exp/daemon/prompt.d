build-exp/daemon/prompt.o: daemon/prompt.c daemon/prompt.h fs/iverr.h
daemon/prompt.h:
fs/iverr.h:

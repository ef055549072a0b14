build-exp/fs/strip.o: fs/strip.c fs/strip.h fs/iverr.h
fs/strip.h:
fs/iverr.h:

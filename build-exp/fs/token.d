build-exp/fs/token.o: fs/token.c fs/token.h fs/iverr.h fs/bytes.h
fs/token.h:
fs/iverr.h:
fs/bytes.h:

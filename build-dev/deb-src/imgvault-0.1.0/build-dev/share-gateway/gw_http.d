build-dev/share-gateway/gw_http.o: share-gateway/gw_http.c \
 share-gateway/gw_http.h
share-gateway/gw_http.h:

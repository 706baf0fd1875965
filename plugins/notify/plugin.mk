# notify: libcurl for HTTP and SMTP, libcrypto (OpenSSL) for HMAC-SHA256 and base64.
notify_CFLAGS := $(CURL_CFLAGS) $(shell pkg-config --cflags libcrypto)
notify_LIBS := $(CURL_LIBS) $(shell pkg-config --libs libcrypto)

/* The text of an HTML body for the snippet (DESIGN §1 Activity): tags dropped (block tags become
 * a space so that words in adjacent cells do not join), <script>, <style> and <title> contents and
 * comments dropped, character references decoded. Not an HTML parser: good enough for the first
 * few hundred characters people read, and linear on hostile input.
 *
 * Ownership: the caller's buffers; `out` needs len + 1 bytes (the text is never longer). */
#ifndef MT_MIME_HTML_TEXT_H
#define MT_MIME_HTML_TEXT_H

#include <stddef.h>

/* Converts `len` bytes of UTF-8 HTML into `out`, NUL-terminated; returns the length. */
size_t mime_html_to_text(const char *html, size_t len, char *out);

#endif

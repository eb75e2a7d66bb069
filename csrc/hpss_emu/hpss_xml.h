/* The XML side of user-defined attributes, as the real hpss_xml.h is included for it
 * by public code that reads checksums (shared/reference/hpss-api.md 1.9). */
#ifndef HPSS_EMU_XML_H
#define HPSS_EMU_XML_H

/* The largest value a user-defined attribute has, its XML wrapping included. */
#define HPSS_XML_SIZE 512

/* The plain text of a value hpss_UserAttrGetAttrs returned wrapped in XML: a
 * malloc'd copy the caller frees; NULL for NULL.  Callers pass NULL after it. */
char *hpss_ChompXMLHeader(const char *XML, ...);

#endif

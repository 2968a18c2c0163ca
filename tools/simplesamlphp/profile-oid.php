<?php
/*
 * The `oid` profile, as Shibboleth-style IdPs speak: attributes named by their OIDs with
 * the `uri` NameFormat, and a transient NameID (so the SP must name users by an attribute,
 * here eduPersonPrincipalName). Merged into the SP's saml20-sp-remote entry.
 */
return [
    'NameIDFormat' => 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient',
    'attributes.NameFormat' => 'urn:oasis:names:tc:SAML:2.0:attrname-format:uri',
    'authproc' => [
        50 => [
            'class' => 'core:AttributeMap',
            // SimpleSAMLphp's name2oid, for the attributes the test users have; the rest
            // (role, the acl[n] entries) keep their names.
            'uid' => 'urn:oid:0.9.2342.19200300.100.1.1',
            'email' => 'urn:oid:0.9.2342.19200300.100.1.3',
            'givenName' => 'urn:oid:2.5.4.42',
            'sn' => 'urn:oid:2.5.4.4',
            'displayName' => 'urn:oid:2.16.840.1.113730.3.1.241',
            'eduPersonPrincipalName' => 'urn:oid:1.3.6.1.4.1.5923.1.1.1.6',
            'eduPersonAffiliation' => 'urn:oid:1.3.6.1.4.1.5923.1.1.1.1',
        ],
    ],
];

<?php
/*
 * The hosted SAML 2.0 IdP. It signs assertions (and responses) with RSA-SHA256 using the
 * key and certificate `setup` made with openssl, and names users by their `email`
 * attribute in an emailAddress-format NameID (the first format jitledger's SP metadata
 * asks for).
 */
$params = require dirname(__DIR__) . '/config/params.php';

$metadata[$params['idp_entity_id']] = [
    'host' => '__DEFAULT__',
    'privatekey' => 'idp.key',
    'certificate' => 'idp.crt',
    'auth' => 'example-userpass',

    'signature.algorithm' => 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
    'saml20.sign.assertion' => true,
    'saml20.sign.response' => true,

    'NameIDFormat' => 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
    'simplesaml.nameidattribute' => 'email',
    'attributes.NameFormat' => 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic',
];
